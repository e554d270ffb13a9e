// A real S3-compatible server for tests: s3rver on 127.0.0.1 on a free port, reached only through
// @aws-sdk/client-s3, as AWS or MinIO would be. s3rver 3.7 checks that the access key id exists (S3RVER)
// but not SigV4 signatures (so a wrong secret passes), it ignores If-None-Match / If-Match on writes, and
// on Node ≥ 17 it cannot paginate a truncated listing (its continuation tokens use DES).
// A small shim in front of it serves the requests to one key one at a time; with `preconditions: true` it also
// enforces those two headers on PUT and DELETE, as AWS S3 and MinIO do, so the store's conditional lock path
// runs against a server.

import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';

export const S3_KEY = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface TestS3 {
  endpoint: string;
  bucket: string;
  /** a raw client, for damaging objects behind the store's back */
  client: S3Client;
  close(): Promise<void>;
}

/**
 * Credentials for s3rver in the environment, and nothing else of the AWS SDK's chain (no profile, region,
 * endpoint or config files), as a user with only these two variables would have. Returns the undo.
 */
export function useS3Credentials(): () => void {
  const names = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_CONFIG_FILE', 'AWS_SHARED_CREDENTIALS_FILE', 'AWS_PROFILE', 'AWS_REGION', 'AWS_DEFAULT_REGION', 'AWS_SESSION_TOKEN', 'AWS_ENDPOINT_URL', 'AWS_ENDPOINT_URL_S3'];
  const saved = new Map(names.map((n) => [n, process.env[n]]));
  for (const n of names) delete process.env[n];
  process.env['AWS_ACCESS_KEY_ID'] = S3_KEY.accessKeyId;
  process.env['AWS_SECRET_ACCESS_KEY'] = S3_KEY.secretAccessKey;
  process.env['AWS_CONFIG_FILE'] = '/nonexistent/aws-config';
  process.env['AWS_SHARED_CREDENTIALS_FILE'] = '/nonexistent/aws-credentials';
  return () => {
    for (const [n, v] of saved) {
      if (v === undefined) delete process.env[n];
      else process.env[n] = v;
    }
  };
}

interface S3rverStore {
  existsObject(bucket: string, key: string): Promise<boolean>;
  getMetadata(bucket: string, key: string): Promise<Record<string, string>>;
}

export async function startS3(opts: { bucket?: string; preconditions?: boolean } = {}): Promise<TestS3> {
  process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
  const bucket = opts.bucket ?? 'qf-test';
  const directory = await mkdtemp(join(tmpdir(), 'qf-s3rver-'));
  const s3rver = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: bucket }] });
  await s3rver.configureBuckets();
  const handle = s3rver.callback();
  const store = (s3rver as unknown as { store: S3rverStore }).store;
  const server: Server = createServer(keyShim(handle, store, opts.preconditions ?? false));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = new S3Client({ endpoint, forcePathStyle: true, region: 'us-east-1', credentials: S3_KEY });
  return {
    endpoint,
    bucket,
    client,
    close: async () => {
      client.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      s3rver.logger.exceptions.unhandle();
      s3rver.logger.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}

/**
 * Requests to one key served one at a time, as S3 orders them; with `preconditions`, If-None-Match: * and
 * If-Match: <etag> on PUT/DELETE answered 412 like AWS S3
 */
function keyShim(handle: (req: IncomingMessage, res: ServerResponse) => void, store: S3rverStore, preconditions: boolean) {
  const queues = new Map<string, Promise<void>>();
  return (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://x');
    const [, bucket, ...rest] = url.pathname.split('/');
    const key = rest.map(decodeURIComponent).join('/');
    // the SDK marks every request with ?x-id=<Command>; other parameters are subresources (multipart parts)
    const subresource = [...url.searchParams.keys()].some((k) => k !== 'x-id');
    const write = req.method === 'PUT' || req.method === 'DELETE';
    // reads of a key wait their turn too: s3rver opens an object's file after checking it exists, so a DELETE in
    // between fails the read's stream with ENOENT outside any handler (S3 answers such a read 200 or 404)
    const read = req.method === 'GET' || req.method === 'HEAD';
    if ((!write && !read) || !bucket || !key || subresource) return handle(req, res);
    const id = `${bucket}/${key}`;
    const passOn = (): Promise<void> =>
      new Promise<void>((resolve) => {
        res.on('close', resolve);
        handle(req, res);
      });
    const previous = queues.get(id) ?? Promise.resolve();
    const turn = previous.then(async () => {
      if (read || !preconditions) return passOn();
      const ifNone = req.headers['if-none-match'];
      const ifMatch = req.headers['if-match'];
      const exists = await store.existsObject(bucket, key);
      const etag = exists ? (await store.getMetadata(bucket, key))['etag'] : undefined;
      if ((ifNone === '*' && exists) || (ifMatch !== undefined && ifMatch !== etag)) {
        res.writeHead(412, { 'content-type': 'application/xml' });
        res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>');
        return;
      }
      await passOn();
    });
    const done = turn.catch(() => undefined);
    queues.set(id, done);
    void done.then(() => {
      if (queues.get(id) === done) queues.delete(id);
    });
  };
}
