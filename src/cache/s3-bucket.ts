// One prefix of one S3-compatible bucket, through @aws-sdk/client-s3: the handful of object operations the
// S3 step store needs (text objects with preconditions, files streamed up and down with their sha256
// checked, listing, batch delete), and SDK failures turned into one-line StoreErrors that name the store
// and what failed. Credentials, region and endpoint come from the SDK's default chain (environment,
// shared config/credentials files, SSO, instance roles); `--store-endpoint` adds a path-style endpoint.

import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import type { Digest } from './key.js';
import { errorName, httpStatus, isNotFound, isTransient, storeFailure } from './s3-failure.js';
import { StoreError } from './store-error.js';

type Sdk = typeof import('@aws-sdk/client-s3');

export interface BucketTarget {
  /** `s3://bucket/prefix`, as messages name the store */
  url: string;
  bucket: string;
  /** '' or ending in '/' */
  prefix: string;
}

export interface ListedObject {
  /** the key relative to the store's prefix */
  rel: string;
  size: number;
  lastModifiedMs: number;
}

export interface BucketTuning {
  /** files larger than this go up as multipart uploads (S3 takes at most 5 GiB in one PUT) */
  multipartThreshold: number;
  /** bytes per part of a multipart upload (at least 5 MiB on AWS; raised so a file needs ≤ 10,000 parts) */
  partSize: number;
}

export const DEFAULT_TUNING: BucketTuning = { multipartThreshold: 64 << 20, partSize: 16 << 20 };
const ATTEMPTS = 3;

export class S3Bucket {
  readonly client: S3Client;
  readonly target: BucketTarget;
  /** the endpoint as messages name it: the URL, or "AWS S3 (us-east-1)" */
  readonly where: string;
  readonly tuning: BucketTuning;
  readonly #sdk: Sdk;

  private constructor(sdk: Sdk, client: S3Client, target: BucketTarget, where: string, tuning: BucketTuning) {
    this.#sdk = sdk;
    this.client = client;
    this.target = target;
    this.where = where;
    this.tuning = tuning;
  }

  /** a client for the target (SDK default chain for credentials and region; us-east-1 when no region is configured) */
  static async connect(target: BucketTarget, opts: { endpoint?: string | undefined; tuning?: Partial<BucketTuning>; client?: S3Client } = {}): Promise<S3Bucket> {
    // a notice about SDK releases that will need a newer Node, printed on every command: not ours to show
    process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
    const sdk = await import('@aws-sdk/client-s3');
    const envEndpoint = process.env['AWS_ENDPOINT_URL_S3'] || process.env['AWS_ENDPOINT_URL'];
    const endpoint = opts.endpoint || undefined;
    if (endpoint !== undefined && !/^https?:\/\/[^/]/.test(endpoint)) {
      throw new StoreError('store-invalid-url', `store ${target.url}: --store-endpoint "${endpoint}" is not an http(s) URL`);
    }
    const region = await configuredRegion(sdk);
    const client =
      opts.client ??
      new sdk.S3Client({
        region: region ?? 'us-east-1',
        ...(endpoint ? { endpoint } : {}),
        // a custom endpoint (MinIO, Ceph, s3rver) rarely has DNS for bucket.host
        forcePathStyle: Boolean(endpoint || envEndpoint),
        // digests are ours (sha256 in meta.json, checked on download); the SDK's default CRC trailers
        // (aws-chunked uploads) are refused by several S3-compatible servers
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        requestHandler: { connectionTimeout: 5_000, requestTimeout: 120_000 },
      });
    const where = endpoint ?? envEndpoint ?? `AWS S3 (${region ?? 'us-east-1'})`;
    return new S3Bucket(sdk, client, target, where, { ...DEFAULT_TUNING, ...opts.tuning });
  }

  /** one cheap request that needs the endpoint, the bucket, working credentials and list permission */
  async probe(): Promise<void> {
    try {
      // an empty listing: some servers (s3rver on Node ≥ 17) fail to paginate a truncated one
      await this.client.send(new this.#sdk.ListObjectsV2Command({ Bucket: this.target.bucket, Prefix: this.key('locks/probe-none'), MaxKeys: 1 }));
    } catch (e) {
      throw this.failure(e, 'listing the bucket', { bucketLevel: true });
    }
  }

  /** the object's text, ETag and modification time; undefined when there is no such object */
  async getText(rel: string): Promise<{ text: string; etag: string; lastModifiedMs: number } | undefined> {
    try {
      const out = await this.client.send(new this.#sdk.GetObjectCommand({ Bucket: this.target.bucket, Key: this.key(rel) }));
      const text = await out.Body!.transformToString('utf8');
      return { text, etag: out.ETag ?? '', lastModifiedMs: out.LastModified?.getTime() ?? 0 };
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw this.failure(e, `reading ${rel}`);
    }
  }

  /**
   * Put a small text object. With `ifNoneMatch: '*'` it is created only if absent, with `ifMatch` it
   * replaces only that version: 'precondition-failed' when the server refused (servers that ignore
   * preconditions, such as s3rver, always write).
   */
  async putText(rel: string, text: string, cond: { ifNoneMatch?: '*'; ifMatch?: string } = {}): Promise<{ etag: string } | 'precondition-failed'> {
    try {
      const out = await this.client.send(
        new this.#sdk.PutObjectCommand({
          Bucket: this.target.bucket,
          Key: this.key(rel),
          Body: text,
          ContentType: 'application/json',
          ...(cond.ifNoneMatch ? { IfNoneMatch: cond.ifNoneMatch } : {}),
          ...(cond.ifMatch ? { IfMatch: cond.ifMatch } : {}),
        }),
      );
      return { etag: out.ETag ?? '' };
    } catch (e) {
      const status = httpStatus(e);
      // 409 ConditionalRequestConflict: a concurrent conditional write to the same key won
      if (status === 412 || status === 409 || errorName(e) === 'PreconditionFailed') return 'precondition-failed';
      throw this.failure(e, `writing ${rel}`);
    }
  }

  /** upload a local file (multipart above the threshold), retrying with a fresh stream on transient failures */
  async putFile(rel: string, path: string, size: number, sha256: Digest): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        if (size > this.tuning.multipartThreshold) await this.#putMultipart(rel, path, size);
        else {
          await this.client.send(
            new this.#sdk.PutObjectCommand({
              Bucket: this.target.bucket,
              Key: this.key(rel),
              Body: size === 0 ? '' : createReadStream(path),
              ContentLength: size,
              // AWS checks the bytes it received against this; others may ignore it
              ChecksumSHA256: Buffer.from(sha256, 'hex').toString('base64'),
            }),
          );
        }
        return;
      } catch (e) {
        if (attempt >= ATTEMPTS || !isTransient(e)) throw this.failure(e, `uploading ${rel}`);
      }
    }
  }

  async #putMultipart(rel: string, path: string, size: number): Promise<void> {
    const { bucket } = this.target;
    const Key = this.key(rel);
    const partSize = Math.max(this.tuning.partSize, Math.ceil(size / 10_000));
    const { UploadId } = await this.client.send(new this.#sdk.CreateMultipartUploadCommand({ Bucket: bucket, Key }));
    try {
      const parts: { ETag: string; PartNumber: number }[] = [];
      for (let start = 0, n = 1; start < size; start += partSize, n++) {
        const length = Math.min(partSize, size - start);
        const out = await this.client.send(
          new this.#sdk.UploadPartCommand({
            Bucket: bucket,
            Key,
            UploadId,
            PartNumber: n,
            ContentLength: length,
            Body: createReadStream(path, { start, end: start + length - 1 }),
          }),
        );
        parts.push({ ETag: out.ETag ?? '', PartNumber: n });
      }
      await this.client.send(new this.#sdk.CompleteMultipartUploadCommand({ Bucket: bucket, Key, UploadId, MultipartUpload: { Parts: parts } }));
    } catch (e) {
      await this.client.send(new this.#sdk.AbortMultipartUploadCommand({ Bucket: bucket, Key, UploadId })).catch(() => undefined);
      throw e;
    }
  }

  /**
   * Stream an object into `path` (or only through the hash when `path` is undefined) and compare with
   * `expect`: the problem found, or undefined when size and sha256 match.
   */
  async fetchChecked(rel: string, path: string | undefined, expect: { size: number; sha256: Digest }, label = rel): Promise<string | undefined> {
    for (let attempt = 1; ; attempt++) {
      let body: Readable;
      try {
        const out = await this.client.send(new this.#sdk.GetObjectCommand({ Bucket: this.target.bucket, Key: this.key(rel) }));
        body = out.Body as Readable;
      } catch (e) {
        if (isNotFound(e)) return `file "${label}" is missing`;
        if (attempt < ATTEMPTS && isTransient(e)) continue;
        throw this.failure(e, `downloading ${rel}`);
      }
      const hash = createHash('sha256');
      let bytes = 0;
      const tap = new Transform({
        transform(chunk: Buffer, _enc, done) {
          hash.update(chunk);
          bytes += chunk.length;
          done(null, chunk);
        },
      });
      try {
        if (path === undefined) await pipeline(body, tap, async (source: AsyncIterable<Buffer>) => {
          for await (const _ of source) void _;
        });
        else await pipeline(body, tap, createWriteStream(path));
      } catch (e) {
        if (attempt < ATTEMPTS && isTransient(e)) continue;
        throw this.failure(e, `downloading ${rel}`);
      }
      if (bytes !== expect.size) return `file "${label}" has ${bytes} bytes, meta.json says ${expect.size}`;
      const digest = hash.digest('hex');
      return digest === expect.sha256 ? undefined : `file "${label}" has sha256 ${digest}, meta.json says ${expect.sha256}`;
    }
  }

  /** every object under `relPrefix` (relative to the store's prefix) */
  async list(relPrefix = ''): Promise<ListedObject[]> {
    const out: ListedObject[] = [];
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(
          new this.#sdk.ListObjectsV2Command({ Bucket: this.target.bucket, Prefix: this.key(relPrefix), ...(token ? { ContinuationToken: token } : {}) }),
        );
      } catch (e) {
        throw this.failure(e, `listing ${relPrefix || 'the store'}`);
      }
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined) continue;
        out.push({ rel: o.Key.slice(this.target.prefix.length), size: o.Size ?? 0, lastModifiedMs: o.LastModified?.getTime() ?? 0 });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  /** delete objects (missing ones are fine), up to 1000 per request */
  async delete(rels: readonly string[]): Promise<void> {
    for (let i = 0; i < rels.length; i += 1000) {
      const batch = rels.slice(i, i + 1000);
      try {
        const out = await this.client.send(
          new this.#sdk.DeleteObjectsCommand({ Bucket: this.target.bucket, Delete: { Objects: batch.map((r) => ({ Key: this.key(r) })), Quiet: true } }),
        );
        const failed = (out.Errors ?? []).filter((er) => er.Code !== 'NoSuchKey');
        if (failed.length > 0) throw new Error(`${failed[0]!.Key}: ${failed[0]!.Code} ${failed[0]!.Message ?? ''}`.trim());
      } catch (e) {
        throw this.failure(e, `deleting ${batch.length} objects`);
      }
    }
  }

  /** delete one object only while it is the version `etag` (servers without conditional deletes delete it anyway) */
  async deleteIfMatch(rel: string, etag: string): Promise<void> {
    try {
      await this.client.send(new this.#sdk.DeleteObjectCommand({ Bucket: this.target.bucket, Key: this.key(rel), IfMatch: etag }));
    } catch (e) {
      const status = httpStatus(e);
      if (status === 412 || status === 404 || isNotFound(e)) return;
      // a server that does not implement conditional deletes
      if (status === 501 || status === 400) {
        await this.delete([rel]);
        return;
      }
      throw this.failure(e, `deleting ${rel}`);
    }
  }

  key(rel: string): string {
    return `${this.target.prefix}${rel}`;
  }

  /** an SDK failure as a one-line StoreError naming the store and what failed */
  failure(e: unknown, doing: string, ctx: { bucketLevel?: boolean } = {}): StoreError {
    return storeFailure(e, doing, this.target, this.where, ctx);
  }
}

/** the region the SDK's default chain finds (env, shared config), or undefined when none is configured */
async function configuredRegion(sdk: Sdk): Promise<string | undefined> {
  try {
    const probe = new sdk.S3Client({});
    const region = await probe.config.region();
    probe.destroy();
    return region || undefined;
  } catch {
    return undefined;
  }
}
