// The step store's own costs: commit (hash + upload) and download (+ hash + install) of a 30 MB entry, and
// lookup latency, for the S3 store against s3rver on loopback (a separate process, started here) and for
// the dir store. Usage: npx tsx bench/store.ts

import { spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DirStore } from '../src/cache/dir-store.js';
import { CACHE_FORMAT, computeKey, type KeyRecord } from '../src/cache/key.js';
import { S3Store } from '../src/cache/s3-store.js';
import type { StepStore } from '../src/cache/step-store.js';
import { parseStoreSpec } from '../src/cache/store.js';
import { median, table } from './util.js';

const RUNS = 5;
const LOOKUPS = 50;
const MB = 1 << 20;
const dir = mkdtempSync(join(tmpdir(), 'qf-bench-store-'));
const port = await freePort();
const server = spawn(process.execPath, [resolve(import.meta.dirname, '../node_modules/s3rver/bin/s3rver.js'), '-d', join(dir, 's3'), '-a', '127.0.0.1', '-p', String(port), '-s', '--configure-bucket', 'bench'], { stdio: 'ignore' });
await waitForPort(port);
process.env['AWS_ACCESS_KEY_ID'] = 'S3RVER';
process.env['AWS_SECRET_ACCESS_KEY'] = 'S3RVER';
const endpoint = `http://127.0.0.1:${port}`;

let n = 0;
async function s3(local: string): Promise<S3Store> {
  const spec = parseStoreSpec('s3://bench/store');
  if (spec.kind !== 's3') throw new Error('s3');
  return S3Store.open(spec, { local: new DirStore(join(dir, local)), endpoint });
}

/** a 30 MB entry like a layer's: one 28 MB tensor file and two small ones */
async function commit(store: StepStore): Promise<{ key: KeyRecord; ms: number }> {
  const record: KeyRecord = { cacheFormat: CACHE_FORMAT, kind: 'gptq', version: 1, params: { run: ++n }, inputs: {}, files: {}, tools: {} };
  const pending = await store.begin('gptq', computeKey(record));
  writeFileSync(join(pending.dir, 'layer.safetensors'), randomFillSync(Buffer.alloc(28 * MB)));
  writeFileSync(join(pending.dir, 'hidden.safetensors'), randomFillSync(Buffer.alloc(2 * MB)));
  writeFileSync(join(pending.dir, 'quant.json'), '{"q_proj": {"bits": 4}}');
  const t0 = performance.now();
  await pending.commit({ record, stepId: 'bench', result: null, elapsedMs: 0 });
  return { key: record, ms: performance.now() - t0 };
}

const rows: string[][] = [];
const size = 30 * MB + 23;
const rate = (ms: number) => `${((size / MB) / (ms / 1000)).toFixed(0)} MB/s`;

// dir store
const local = new DirStore(join(dir, 'dir'));
const dirCommits: number[] = [];
const dirVerifies: number[] = [];
let dirKey: KeyRecord | undefined;
for (let i = 0; i < RUNS; i++) {
  const { key, ms } = await commit(local);
  dirKey ??= key;
  dirCommits.push(ms);
  const e = (await local.lookup('gptq', computeKey(key)))!;
  const t0 = performance.now();
  await local.verify(e);
  dirVerifies.push(performance.now() - t0);
}
rows.push(['dir', 'commit 30 MB (hash + rename)', `${median(dirCommits).toFixed(0)} ms`, rate(median(dirCommits))]);
rows.push(['dir', 'verify 30 MB (re-hash)', `${median(dirVerifies).toFixed(0)} ms`, rate(median(dirVerifies))]);

// s3 store
const writer = await s3('writer');
const uploads: number[] = [];
const downloads: number[] = [];
const keys: KeyRecord[] = [];
for (let i = 0; i < RUNS; i++) {
  const { key, ms } = await commit(writer);
  uploads.push(ms);
  keys.push(key);
  const reader = await s3(`reader-${i}`);
  const t0 = performance.now();
  const got = await reader.get('gptq', computeKey(key));
  downloads.push(performance.now() - t0);
  if (!got) throw new Error('download failed');
  reader.close();
}
rows.push(['s3', 'commit 30 MB (hash + upload files + meta.json + local install)', `${median(uploads).toFixed(0)} ms`, rate(median(uploads))]);
rows.push(['s3', 'get 30 MB on another machine (lookup + download + hash + install)', `${median(downloads).toFixed(0)} ms`, rate(median(downloads))]);

const reader = await s3('reader-lookups');
const time = async (fn: () => Promise<unknown>): Promise<number> => {
  const ts: number[] = [];
  for (let i = 0; i < LOOKUPS; i++) {
    const t0 = performance.now();
    await fn();
    ts.push(performance.now() - t0);
  }
  return median(ts);
};
const hitKey = computeKey(keys[0]!);
const missKey = computeKey({ ...keys[0]!, params: { miss: true } });
rows.push(['s3', 'lookup, hit in the bucket (GET meta.json + LIST)', `${(await time(() => reader.inspectRemote('gptq', hitKey))).toFixed(1)} ms`, '']);
rows.push(['s3', 'lookup, miss', `${(await time(() => reader.lookup('gptq', missKey))).toFixed(1)} ms`, '']);
await reader.get('gptq', hitKey);
rows.push(['s3', 'lookup, hit in the local copy (no request)', `${(await time(() => reader.lookup('gptq', hitKey))).toFixed(2)} ms`, '']);
rows.push(['dir', 'lookup, hit', `${(await time(() => local.lookup('gptq', computeKey(dirKey!)))).toFixed(2)} ms`, '']);

console.log(table(['store', 'operation', `median of ${RUNS} (lookups: ${LOOKUPS})`, 'throughput'], rows));
writer.close();
reader.close();
server.kill();
rmSync(dir, { recursive: true, force: true });

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return p;
}

async function waitForPort(p: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((r) => {
      const c = connect(p, '127.0.0.1', () => (c.end(), r(true)));
      c.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`s3rver did not start on port ${p}`);
}
