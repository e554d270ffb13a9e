// The S3 store against a real S3-compatible server (s3rver on 127.0.0.1, see s3-server.ts), reached only
// through @aws-sdk/client-s3 with credentials from the environment, as AWS or MinIO would be: the store
// contract (on a server that ignores preconditions, and on one that enforces them), then what only the S3
// backend has: uploads that never finish, downloads that do not match, the local copy, multipart
// uploads, lock objects, and the errors of a store that cannot be used.

import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { DirStore } from '../../src/cache/dir-store.js';
import { computeKey, type Digest, type Json } from '../../src/cache/key.js';
import { S3Store, type S3StoreOptions } from '../../src/cache/s3-store.js';
import type { CacheEntry } from '../../src/cache/step-store.js';
import { openStore, parseStoreSpec } from '../../src/cache/store.js';
import { describeStoreContract, recordFor, type MakeHarness } from './cache-contract.js';
import { S3_KEY, startS3, useS3Credentials, type TestS3 } from './s3-server.js';

const CHILD = join(import.meta.dirname, 'fixtures', 's3-child.ts');

let plain: TestS3;
let strict: TestS3;
let restoreEnv: () => void;

beforeAll(async () => {
  restoreEnv = useS3Credentials();
  [plain, strict] = await Promise.all([startS3(), startS3({ preconditions: true })]);
});
afterAll(async () => {
  await Promise.all([plain?.close(), strict?.close()]);
  restoreEnv();
});

let prefixes = 0;
const open: S3Store[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.close();
});

/** a store on a prefix of its own, with a local copy in `localDir` */
async function s3Store(server: TestS3, url: string, localDir: string, opts: Partial<S3StoreOptions> = {}): Promise<S3Store> {
  const spec = parseStoreSpec(url);
  if (spec.kind !== 's3') throw new Error(url);
  const store = await S3Store.open(spec, { local: new DirStore(localDir), endpoint: server.endpoint, ...opts });
  open.push(store);
  return store;
}

/** the bucket key of an entry's file (`meta.json`, or a file of its published upload) */
async function objectKey(server: TestS3, prefix: string, e: CacheEntry, rel: string): Promise<string> {
  const base = `${prefix}/${e.kind}/${e.key}/`;
  if (rel === 'meta.json') return `${base}meta.json`;
  const meta = JSON.parse(await getText(server, `${base}meta.json`)) as { upload: string };
  return `${base}${meta.upload}/${rel}`;
}

async function getText(server: TestS3, key: string): Promise<string> {
  const out = await server.client.send(new GetObjectCommand({ Bucket: server.bucket, Key: key }));
  return out.Body!.transformToString('utf8');
}
const putObject = (server: TestS3, key: string, body: string) => server.client.send(new PutObjectCommand({ Bucket: server.bucket, Key: key, Body: body }));
const deleteObject = (server: TestS3, key: string) => server.client.send(new DeleteObjectCommand({ Bucket: server.bucket, Key: key }));
async function listKeys(server: TestS3, prefix: string): Promise<string[]> {
  const out = await server.client.send(new ListObjectsV2Command({ Bucket: server.bucket, Prefix: `${prefix}/` }));
  return (out.Contents ?? []).map((o) => o.Key!).sort();
}

function s3Harness(server: () => TestS3, opts: Partial<S3StoreOptions> = {}): MakeHarness {
  return async (work, onCorrupt) => {
    const prefix = `contract-${++prefixes}`;
    const url = `s3://${server().bucket}/${prefix}`;
    let locals = 0;
    const make = () => s3Store(server(), url, join(work, `local-${locals++}`), { ...opts, onCorrupt: (_k, _key, problem) => onCorrupt(problem) });
    const at = (e: CacheEntry, rel: string) => objectKey(server(), prefix, e, rel);
    return {
      store: await make(),
      other: make,
      damage: {
        removeFile: async (e, rel) => void (await deleteObject(server(), await at(e, rel))),
        writeFile: async (e, rel, data) => void (await putObject(server(), await at(e, rel), data)),
        readMeta: async (e) => getText(server(), await at(e, 'meta.json')),
        writeMeta: async (e, text) => void (await putObject(server(), await at(e, 'meta.json'), text)),
        removeMeta: async (e) => void (await deleteObject(server(), await at(e, 'meta.json'))),
      },
    };
  };
}

describeStoreContract('s3 (server ignores preconditions)', s3Harness(() => plain));
describeStoreContract('s3 (server enforces preconditions)', s3Harness(() => strict));

describe('s3 store', () => {
  let work: string;
  let prefix: string;
  let url: string;
  beforeEach(async () => {
    work = await mkdtemp(join(tmpdir(), 'qf-s3-store-'));
    prefix = `s3-${++prefixes}`;
    url = `s3://${plain.bucket}/${prefix}`;
  });
  afterEach(() => rm(work, { recursive: true, force: true }));

  async function put(store: S3Store, params: Json, files: Record<string, string | Buffer>): Promise<CacheEntry> {
    const record = recordFor(params);
    const pending = await store.begin('gptq', computeKey(record));
    for (const [rel, data] of Object.entries(files)) await writeFile(join(pending.dir, rel), data);
    return pending.commit({ record, stepId: 's', result: null, elapsedMs: 0 });
  }

  describe('an entry is published by its meta.json, after every file', () => {
    test('a commit that fails before meta.json leaves no entry, here or for anyone', async () => {
      const client = new S3Client({ endpoint: plain.endpoint, forcePathStyle: true, region: 'us-east-1' });
      client.middlewareStack.add(
        (next, context) => async (args) => {
          if (context.commandName === 'PutObjectCommand' && ((args.input as { Key?: string }).Key ?? '').endsWith('/meta.json')) throw new Error('connection lost');
          return next(args);
        },
        { step: 'initialize', name: 'failMeta' },
      );
      const store = await s3Store(plain, url, join(work, 'a'), { client });
      await expect(put(store, { a: 1 }, { f: 'data', g: 'more' })).rejects.toMatchObject({ reason: 'store-upload-failed' });
      const key = computeKey(recordFor({ a: 1 }));
      expect(await store.lookup('gptq', key)).toBeUndefined();
      expect(await store.local.inspect('gptq', key)).toEqual({ status: 'miss' });
      expect(await (await s3Store(plain, url, join(work, 'b'))).lookup('gptq', key)).toBeUndefined();
    });

    test('a process killed between its files and meta.json leaves no entry; gc deletes its files once abandoned', async () => {
      const child = spawn(process.execPath, ['--import', 'tsx', CHILD, plain.endpoint, url, join(work, 'child')], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const key = await new Promise<Digest>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          const m = /uploaded ([0-9a-f]{64})/.exec(d.toString());
          if (m) resolve(m[1] as Digest);
        });
        child.on('exit', (code) => reject(new Error(`child exited with ${code} before uploading: ${stderr}`)));
      });
      child.kill('SIGKILL');
      const left = await listKeys(plain, prefix);
      expect(left.filter((k) => k.startsWith(`${prefix}/demo/${key}/`))).toHaveLength(3);
      const store = await s3Store(plain, url, join(work, 'a'));
      expect(await store.inspect('demo', key)).toEqual({ status: 'miss' });
      expect((await store.gc({ maxBytes: 1 << 30 })).tempDirsRemoved).toBe(0);
      const abandoned = await s3Store(plain, url, join(work, 'b'), { abandonedAfterMs: 0 });
      expect((await abandoned.gc({ maxBytes: 1 << 30 })).tempDirsRemoved).toBe(1);
      expect((await listKeys(plain, prefix)).filter((k) => k.includes('/demo/'))).toEqual([]);
    });
  });

  test('a download that does not match its digest is reported and nothing of it is kept', async () => {
    const e = await put(await s3Store(plain, url, join(work, 'a')), { a: 1 }, { f: 'data', g: 'more' });
    await putObject(plain, await objectKey(plain, prefix, e, 'g'), 'MORE');
    const reader = await s3Store(plain, url, join(work, 'b'));
    const hit = await reader.lookup('gptq', e.key);
    const verdict = await reader.verify(hit!);
    expect(verdict).toMatchObject({ ok: false, problem: expect.stringMatching(/^file "g" has sha256 [0-9a-f]{64}, meta.json says [0-9a-f]{64} \(downloaded from s3:\/\/qf-test\/s3-\d+\)$/) });
    expect(await reader.local.inspect('gptq', e.key)).toEqual({ status: 'miss' });
    expect(await readdir(join(work, 'b', 'tmp'))).toEqual([]);
  });

  test('once downloaded, an entry is looked up in the local copy without a request', async () => {
    const e = await put(await s3Store(plain, url, join(work, 'a')), { a: 1 }, { f: 'data' });
    let requests = 0;
    const client = new S3Client({ endpoint: plain.endpoint, forcePathStyle: true, region: 'us-east-1' });
    client.middlewareStack.add(
      (next) => async (args) => {
        requests++;
        return next(args);
      },
      { step: 'initialize', name: 'count' },
    );
    const reader = await s3Store(plain, url, join(work, 'b'), { client });
    expect(await reader.get('gptq', e.key)).toBeDefined();
    const before = requests;
    const again = await reader.lookup('gptq', e.key);
    expect(await reader.verify(again!)).toEqual({ ok: true });
    expect(requests).toBe(before);
  });

  test.each([
    ['the wrong size', 'da'],
    ['the right size but other bytes', 'DATA'],
  ])('a local copy damaged to %s is dropped and downloaded again; the bucket keeps its entry', async (_what, bytes) => {
    const store = await s3Store(plain, url, join(work, 'a'));
    const e = await put(store, { a: 1 }, { f: 'data' });
    await writeFile(join(e.dir, 'f'), bytes);
    const hit = await store.get('gptq', e.key);
    expect(hit).toBeDefined();
    expect(await store.local.verify(hit!)).toEqual({ ok: true });
    expect((await store.inspectRemote('gptq', e.key)).status).toBe('hit');
  });

  test('files above the multipart threshold go up in parts and come back byte for byte', async () => {
    const tuning = { multipartThreshold: 5 << 20, partSize: 5 << 20 };
    const big = Buffer.alloc(12 << 20);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
    const e = await put(await s3Store(plain, url, join(work, 'a'), { tuning }), { a: 1 }, { 'model.safetensors': big });
    const got = await (await s3Store(plain, url, join(work, 'b'))).get('gptq', e.key);
    expect(got?.meta.files['model.safetensors']?.size).toBe(big.length);
  });

  test('gc removes the oldest entries first (S3 keeps no access times)', async () => {
    const store = await s3Store(plain, url, join(work, 'a'));
    const a = await put(store, { a: 1 }, { f: 'x'.repeat(1000) });
    await new Promise((r) => setTimeout(r, 5));
    const b = await put(store, { a: 2 }, { f: 'x'.repeat(1000) });
    await store.lookup('gptq', a.key);
    const report = await store.gc({ maxBytes: (await store.totalSize()) - 1 });
    expect(report.removed.map((r) => [r.key, r.reason])).toEqual([[a.key, 'oldest']]);
    // the local copy is trimmed to the same budget, least recently used first
    expect(report.local.removed.map((r) => r.key)).toEqual([b.key]);
    expect(await (await s3Store(plain, url, join(work, 'b'))).lookup('gptq', b.key)).toBeDefined();
  });

  describe('step locks', () => {
    const KEY = computeKey(recordFor({ lock: 1 }));
    const lockKey = () => `${prefix}/locks/${KEY}.lock`;
    /** the pid of a process that has exited */
    async function deadPid(): Promise<number> {
      const p = spawn(process.execPath, ['-e', '']);
      await new Promise((r) => p.on('exit', r));
      return p.pid!;
    }
    const lockRecord = (o: { pid: number; hostname: string; heartbeatAt: Date }) =>
      JSON.stringify({ pid: o.pid, hostname: o.hostname, startedAt: new Date(0).toISOString(), token: 'x', heartbeatAt: o.heartbeatAt.toISOString() });

    test('the server decides the mode: conditional writes where it enforces If-None-Match, else best effort', async () => {
      const best = await s3Store(plain, url, join(work, 'a'));
      const cond = await s3Store(strict, `s3://${strict.bucket}/${prefix}`, join(work, 'b'));
      expect(await Promise.all([best.lockMode(), cond.lockMode()])).toEqual(['best-effort', 'conditional']);
      // the probe leaves nothing behind
      expect(await listKeys(plain, `${prefix}/locks`)).toEqual([]);
    });

    for (const [name, server] of [['best effort', () => plain], ['conditional', () => strict]] as const) {
      describe(name, () => {
        const storeUrl = () => `s3://${server().bucket}/${prefix}`;

        test('a second process waits while the first holds the lock, then gets it', async () => {
          const [a, b] = [await s3Store(server(), storeUrl(), join(work, 'a')), await s3Store(server(), storeUrl(), join(work, 'b'))];
          const events: string[] = [];
          let release!: () => void;
          const first = a.withStepLock(KEY, async () => {
            events.push('a in');
            await new Promise<void>((r) => (release = r));
            events.push('a out');
          });
          while (!events.includes('a in')) await new Promise((r) => setTimeout(r, 5));
          const waits: string[] = [];
          const second = b.withStepLock(KEY, async () => void events.push('b in'), { onWait: (m) => waits.push(m) });
          while (waits.length === 0) await new Promise((r) => setTimeout(r, 5));
          expect(waits[0]).toMatch(new RegExp(`^waiting for process ${process.pid} \\(since .*\\), which holds the lock of step ${KEY.slice(0, 12)} in s3://`));
          release();
          await Promise.all([first, second]);
          expect(events).toEqual(['a in', 'a out', 'b in']);
          expect(await listKeys(server(), `${prefix}/locks`)).toEqual([]);
        });

        test('a lock left by a process that died on this host is taken over, with a warning', async () => {
          await putObject(server(), lockKey(), lockRecord({ pid: await deadPid(), hostname: hostname(), heartbeatAt: new Date() }));
          const warnings: string[] = [];
          const store = await s3Store(server(), storeUrl(), join(work, 'a'), { onWarn: (m) => warnings.push(m) });
          expect(await store.withStepLock(KEY, async () => 'ran', { onWait: () => expect.unreachable('no wait') })).toBe('ran');
          expect(warnings).toEqual([expect.stringMatching(/^took over the lock of step \w+ in s3:\/\/\S+ from process \d+ \(since .*\): the process is gone$/)]);
        });

        test('a lock of another host is taken over once its heartbeat is old, and waited for while it is fresh', async () => {
          const warnings: string[] = [];
          const store = await s3Store(server(), storeUrl(), join(work, 'a'), { onWarn: (m) => warnings.push(m), locks: { staleMs: 60_000 } });
          await putObject(server(), lockKey(), lockRecord({ pid: 1, hostname: 'elsewhere', heartbeatAt: new Date() }));
          await expect(store.withStepLock(KEY, async () => 'ran', { timeoutMs: 100 })).rejects.toMatchObject({ reason: 'cache-lock-timeout' });
          await putObject(server(), lockKey(), lockRecord({ pid: 1, hostname: 'elsewhere', heartbeatAt: new Date(Date.now() - 90_000) }));
          expect(await store.withStepLock(KEY, async () => 'ran')).toBe('ran');
          expect(warnings).toEqual([expect.stringMatching(/from process 1 on host elsewhere .*: its heartbeat stopped 90 s ago \(limit 60 s\)$/)]);
        });

        test('a held lock keeps its heartbeat fresh', async () => {
          const store = await s3Store(server(), storeUrl(), join(work, 'a'), { locks: { heartbeatMs: 40 } });
          const beats = await store.withStepLock(KEY, async () => {
            const read = async () => JSON.parse(await getText(server(), lockKey())) as { heartbeatAt: string; pid: number };
            const first = await read();
            // beats every 40 ms; a loaded machine may delay a few, so wait for the next one (up to 30 s)
            let later = first;
            for (let i = 0; i < 300 && later.heartbeatAt === first.heartbeatAt; i++) {
              await new Promise((r) => setTimeout(r, 100));
              later = await read();
            }
            return { first: Date.parse(first.heartbeatAt), later: Date.parse(later.heartbeatAt), pid: later.pid };
          });
          expect(beats.later).toBeGreaterThan(beats.first);
          expect(beats.pid).toBe(process.pid);
        });
      });
    }

    test('with conditional writes, processes racing for one lock hold it one at a time', async () => {
      const stores = await Promise.all([0, 1, 2, 3].map((i) => s3Store(strict, `s3://${strict.bucket}/${prefix}`, join(work, `l${i}`))));
      let inside = 0;
      let most = 0;
      await Promise.all(
        stores.map((s) =>
          s.withStepLock(KEY, async () => {
            most = Math.max(most, ++inside);
            await new Promise((r) => setTimeout(r, 20));
            inside--;
          }),
        ),
      );
      expect(most).toBe(1);
    });
  });

  describe('a store that cannot be used is refused when it is opened, in one line', () => {
    const opening = (target: string, endpoint: string | undefined) => openStore(parseStoreSpec(target), { cacheDir: join(work, 'local'), endpoint });

    test('nobody listening at the endpoint', async () => {
      const port = await freePort();
      const err = await opening(url, `http://127.0.0.1:${port}`).catch((e: unknown) => e);
      expect(err).toMatchObject({ reason: 'store-unreachable', message: `store ${url}: cannot reach http://127.0.0.1:${port} (ECONNREFUSED)` });
    });

    test('a bucket that does not exist', async () => {
      const err = await opening('s3://no-such-bucket/p', plain.endpoint).catch((e: unknown) => e);
      expect(err).toMatchObject({ reason: 'store-bucket-missing', message: `store s3://no-such-bucket/p: bucket "no-such-bucket" not found at ${plain.endpoint}` });
    });

    test('an access key the server does not know (s3rver checks the key id, not the signature)', async () => {
      process.env['AWS_ACCESS_KEY_ID'] = 'NOT-A-KEY';
      try {
        const err = await opening(url, plain.endpoint).catch((e: unknown) => e);
        expect(err).toMatchObject({ reason: 'store-credentials-rejected' });
        expect((err as Error).message).toMatch(new RegExp(`^store ${url}: credentials rejected by ${plain.endpoint} while listing the bucket \\(InvalidAccessKeyId: .*\\)$`));
      } finally {
        process.env['AWS_ACCESS_KEY_ID'] = S3_KEY.accessKeyId;
      }
    });

    test('no credentials anywhere in the chain', async () => {
      delete process.env['AWS_ACCESS_KEY_ID'];
      delete process.env['AWS_SECRET_ACCESS_KEY'];
      try {
        const err = await opening(url, plain.endpoint).catch((e: unknown) => e);
        expect(err).toMatchObject({ reason: 'store-credentials-missing', message: expect.stringMatching(new RegExp(`^store ${url}: no AWS credentials found \\(`)) });
      } finally {
        process.env['AWS_ACCESS_KEY_ID'] = S3_KEY.accessKeyId;
        process.env['AWS_SECRET_ACCESS_KEY'] = S3_KEY.secretAccessKey;
      }
    });

    test.each([
      ['gs://bucket/p', 'unsupported scheme "gs://"'],
      ['s3://', 'is not a bucket name'],
      ['s3://b/../x', 'is not a bucket name'],
      ['s3://bucket/a/../b', 'may not contain'],
    ])('a store URL that is not one: %s', (text, problem) => {
      expect(() => parseStoreSpec(text)).toThrow(expect.objectContaining({ reason: 'store-invalid-url', message: expect.stringContaining(problem) }));
    });

    test('an endpoint that is not an http(s) URL', async () => {
      await expect(opening(url, '127.0.0.1:9000')).rejects.toMatchObject({ reason: 'store-invalid-url' });
    });
  });

  test('store URLs name a bucket and a prefix; anything else is a directory', () => {
    expect(parseStoreSpec('s3://bucket')).toEqual({ kind: 's3', bucket: 'bucket', prefix: '', url: 's3://bucket' });
    expect(parseStoreSpec('s3://bucket//team/cache/')).toEqual({ kind: 's3', bucket: 'bucket', prefix: 'team/cache/', url: 's3://bucket/team/cache' });
    expect(parseStoreSpec('/mnt/shared/qf')).toEqual({ kind: 'dir', dir: '/mnt/shared/qf' });
  });
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}
