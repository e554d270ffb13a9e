// The job queue: the 4-variant smoothing sweep (test/queue/queue-harness.ts: the example model written once,
// 16 calibration samples, 4 evaluation windows) through a redis-server of its own with 2 workers × 1
// onnxruntime thread against 1 worker × 1 thread, each from an empty store (a directory, as on a shared
// filesystem), and the queue's own overhead: the same sweep fully cached, through the queue and locally.
// Medians of --runs runs (default 3), all measured in this process's run, through the real CLI.
// --samples and --windows scale the sweep (calibration samples, evaluation windows; defaults: the harness's 16
// and 4), so the share of work the variants can do side by side grows.
// Usage: npx tsx bench/queue.ts [--runs 3] [--samples 16] [--windows 4]

import { readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { mkdtemp } from 'node:fs/promises';
import { startRedis, startWorker, sweepWorkspace, SWEEP, writeModel, type WorkerProcess } from '../test/queue/queue-harness.js';
import { runCli, type CliRun } from '../test/reliability/workspace.js';
import { median, table } from './util.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, samples: { type: 'string', default: '16' }, windows: { type: 'string', default: '4' } } });
const [runs, samples, windows] = [Number(values.runs), Number(values.samples), Number(values.windows)];
if (![runs, samples, windows].every((n) => Number.isInteger(n) && n >= 1)) {
  console.error('usage: npx tsx bench/queue.ts [--runs N] [--samples N] [--windows N]');
  process.exit(2);
}

const model = await writeModel(await mkdtemp(join(tmpdir(), 'qf-bench-queue-model-')));
const ws = await sweepWorkspace(model);
const recipe = await readFile(ws.recipe, 'utf8');
await writeFile(ws.recipe, recipe.replace('samples: 16', `samples: ${samples}`).replace('max_windows: 4', `max_windows: ${windows}`));
const redis = await startRedis();
const load: number[] = [];

function check(r: CliRun, what: string): CliRun {
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${r.stderr}`);
  load.push(loadavg()[0]!);
  return r;
}

/** the sweep on the queue with `n` one-thread workers, on the store `store`; wall ms of the coordinator */
async function onQueue(n: number, store: string): Promise<number> {
  const workers: WorkerProcess[] = [];
  for (let i = 0; i < n; i++) workers.push(await startWorker(redis, ['--store', store], ws.dir));
  try {
    return check(await runCli(ws, ['sweep', 'recipe.yaml', '--json', '--device', 'cpu', '--queue', redis.url, '--store', store, '--set', SWEEP[0]!]), `queue × ${n}`).ms;
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }
}

const local = (store: string): Promise<CliRun> => runCli(ws, ['sweep', 'recipe.yaml', '--json', '--device', 'cpu', '--threads', '1', '--store', store, '--set', SWEEP[0]!]);

const ms: Record<'one' | 'two' | 'local' | 'cachedLocal' | 'cachedQueue', number[]> = { one: [], two: [], local: [], cachedLocal: [], cachedQueue: [] };
let steps = 0;
for (let i = 0; i < runs; i++) {
  const l = check(await local(join(ws.dir, `local-${i}`)), 'local');
  ms.local.push(l.ms);
  steps = Number(l.events.at(-1)!['ran']);
  ms.one.push(await onQueue(1, join(ws.dir, `one-${i}`)));
  ms.two.push(await onQueue(2, join(ws.dir, `two-${i}`)));
  // fully cached: every step a store hit; the queue run connects, plans and finds every entry
  ms.cachedLocal.push(check(await local(join(ws.dir, `two-${i}`)), 'cached local').ms);
  const workers = [await startWorker(redis, ['--store', join(ws.dir, `two-${i}`)], ws.dir)];
  ms.cachedQueue.push(check(await runCli(ws, ['sweep', 'recipe.yaml', '--json', '--device', 'cpu', '--queue', redis.url, '--store', join(ws.dir, `two-${i}`), '--set', SWEEP[0]!]), 'cached queue').ms);
  await Promise.all(workers.map((w) => w.stop()));
}
await redis.stop();

const s = (xs: number[]): string => (median(xs) / 1000).toFixed(1);
console.log(`queue: 4-variant smoothing sweep (${steps} steps; ${samples} calibration samples, ${windows} evaluation windows of 128 tokens), medians of ${runs} runs; load average during the runs ${Math.min(...load).toFixed(1)}–${Math.max(...load).toFixed(1)} on ${(await import('node:os')).availableParallelism()} cores\n`);
console.log(
  table(
    ['build', 'median s', 'vs 1 worker'],
    [
      ['local, 1 thread (no queue)', s(ms.local), (median(ms.local) / median(ms.one)).toFixed(2)],
      ['queue, 1 worker × 1 thread', s(ms.one), '1.00'],
      ['queue, 2 workers × 1 thread', s(ms.two), (median(ms.two) / median(ms.one)).toFixed(2)],
      ['fully cached, local', s(ms.cachedLocal), ''],
      ['fully cached, through the queue', s(ms.cachedQueue), ''],
    ],
  ),
);
console.log(`\nqueue overhead on a fully cached plan: ${(median(ms.cachedQueue) - median(ms.cachedLocal)).toFixed(0)} ms`);
await rm(ws.dir, { recursive: true, force: true });
await rm(model, { recursive: true, force: true });
