// Pins in an S3 store: a run on one machine registers the keys it needs in the bucket, and `cache gc` on
// another (its own local copy) leaves those entries alone without waiting for the run; registrations whose
// heartbeat stopped are deleted and pin nothing.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { DirStore } from '../../src/cache/dir-store.js';
import { computeKey, type Json } from '../../src/cache/key.js';
import { S3Store } from '../../src/cache/s3-store.js';
import type { CacheEntry } from '../../src/cache/step-store.js';
import { parseStoreSpec } from '../../src/cache/store.js';
import { recordFor } from './cache-contract.js';
import { startS3, useS3Credentials, type TestS3 } from './s3-server.js';

let server: TestS3;
let restoreEnv: () => void;
let work: string;
const open: S3Store[] = [];
beforeAll(async () => {
  restoreEnv = useS3Credentials();
  server = await startS3({ preconditions: true });
  work = await mkdtemp(join(tmpdir(), 'qf-s3-pins-'));
});
afterEach(() => {
  for (const s of open.splice(0)) s.close();
});
afterAll(async () => {
  await server?.close();
  restoreEnv();
  await rm(work, { recursive: true, force: true });
});

let stores = 0;
async function machine(prefix: string): Promise<S3Store> {
  const spec = parseStoreSpec(`s3://${server.bucket}/${prefix}`);
  if (spec.kind !== 's3') throw new Error(prefix);
  const store = await S3Store.open(spec, { local: new DirStore(join(work, `local-${++stores}`)), endpoint: server.endpoint });
  open.push(store);
  return store;
}

async function put(store: S3Store, params: Json): Promise<CacheEntry> {
  const record = recordFor(params);
  const pending = await store.begin('gptq', computeKey(record));
  await writeFile(join(pending.dir, 'f'), JSON.stringify(params));
  return pending.commit({ record, stepId: 's', result: null, elapsedMs: 0 });
}

describe('s3 pins', () => {
  test('gc on another machine leaves the entries a live run pins, and takes them once it ends', async () => {
    const [a, b] = [await machine('pins-1'), await machine('pins-1')];
    const pinned = await put(a, { keep: 'pinned' });
    const loose = await put(a, { keep: 'loose' });
    await a.withRun(
      async () => {
        const report = await b.gc({ maxBytes: 0 });
        expect(report.removed.map((r) => r.key)).toEqual([loose.key]);
        expect(report.pinnedBytes).toBeGreaterThan(0);
        expect((await b.inspectRemote('gptq', pinned.key)).status).toBe('hit');
      },
      { pins: [pinned.key] },
    );
    expect((await b.gc({ maxBytes: 0 })).removed.map((r) => r.key)).toEqual([pinned.key]);
  });

  test('a registration whose heartbeat stopped pins nothing and is deleted', async () => {
    const store = await machine('pins-2');
    const e = await put(store, { keep: 'abandoned' });
    const old = new Date(Date.now() - 10 * 60_000).toISOString();
    const body = JSON.stringify({ pid: 1, hostname: 'gone', startedAt: old, token: 't', pins: [e.key], heartbeatAt: old });
    await server.client.send(new PutObjectCommand({ Bucket: server.bucket, Key: 'pins-2/runs/gone-1-00000000.json', Body: body }));
    expect((await store.gc({ maxBytes: 0 })).removed.map((r) => r.key)).toEqual([e.key]);
    expect(await store.bucket.list('runs/')).toEqual([]);
  });
});
