// Data-parallel GPTQ calibration on the job queue: GPTQ W4A16 on ../shared/models/wiki-llama-8m (32
// calibration windows of 128 tokens, no evaluation) from an empty directory store, 1 shard on 1
// one-thread worker against calibration_shards 2 on 2 one-thread workers, through a redis-server of its own
// and the real CLI. The capture+Hessian phase: with 1 shard, Σ over layers of the gptq steps' capture and
// hessian times (their own metrics); with 2 shards, Σ over layers of the wall time from the first shard step's
// start to the last one's end (as the workers report them) plus the gptq steps' hessian times (summing the
// shards, and the inverse, as before). Medians of --runs runs (default 1).
// Usage: npx tsx bench/queue-shards.ts [--runs 1] [--samples 32]

import { rm } from 'node:fs/promises';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startRedis, startWorker, type WorkerProcess } from '../test/queue/queue-harness.js';
import { shardsWorkspace } from '../test/queue/shards-harness.js';
import { runCli, type RunEvent } from '../test/reliability/workspace.js';
import { median, table } from './util.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '1' }, samples: { type: 'string', default: '32' } } });
const [runs, samples] = [Number(values.runs), Number(values.samples)];
if (!Number.isInteger(runs) || runs < 1 || !Number.isInteger(samples) || samples < 2) {
  console.error('usage: npx tsx bench/queue-shards.ts [--runs N] [--samples N]');
  process.exit(2);
}

// no evaluation: the FP evaluation would keep the second worker busy while the first runs the GPTQ chain
const ws = await shardsWorkspace(2, samples, 0);
const redis = await startRedis();
const load: number[] = [];

interface Timed {
  wall: number;
  phase: number;
  /** the gptq-hessian steps each worker ran, and their summed own step time (ms) */
  perWorker: number[];
  shardMs: number;
}

/** the recipe on the queue with `n` one-thread workers and an empty store; the coordinator's wall ms and the capture+Hessian phase */
async function onQueue(n: number, recipe: string, store: string): Promise<Timed> {
  const workers: WorkerProcess[] = [];
  const seen: { e: RunEvent; at: number }[] = [];
  const perWorker = Array.from({ length: n }, () => 0);
  let shardMs = 0;
  for (let i = 0; i < n; i++) {
    const w = await startWorker(redis, ['--store', store], ws.dir);
    w.onEvent = (e) => {
      seen.push({ e, at: performance.now() });
      if (e.event === 'step-done' && e.result === 'ran' && e['kind'] === 'gptq-hessian') {
        perWorker[i]!++;
        shardMs += Number(e['ms']);
      }
    };
    workers.push(w);
  }
  try {
    const r = await runCli(ws, ['run', recipe, '--json', '--device', 'cpu', '--queue', redis.url, '--store', store]);
    if (r.code !== 0) throw new Error(`${recipe} on ${n} workers failed (${r.code}): ${r.stderr}`);
    load.push(loadavg()[0]!);
    let phase = 0;
    const shardSpans = new Map<string, [number, number]>();
    for (const { e, at } of seen) {
      const m = /^(stage1\.gptq\/layer\.\d+)\.shard\.\d+$/.exec(String(e.id));
      if (m && (e.event === 'step-start' || e.event === 'step-done')) {
        const span = shardSpans.get(m[1]!) ?? [Infinity, -Infinity];
        shardSpans.set(m[1]!, [Math.min(span[0], at), Math.max(span[1], at)]);
      }
      if (e.event === 'step-done' && e.result === 'ran' && e['kind'] === 'gptq') {
        const t = (e['metrics'] as { timing_ms: { capture: number; hessian: number } }).timing_ms;
        phase += t.capture + t.hessian;
      }
    }
    for (const [a, b] of shardSpans.values()) phase += b - a;
    return { wall: r.ms, phase, perWorker, shardMs };
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }
}

const one: Timed[] = [];
const two: Timed[] = [];
for (let i = 0; i < runs; i++) {
  one.push(await onQueue(1, 'recipe.yaml', join(ws.dir, `one-${i}`)));
  two.push(await onQueue(2, 'recipe-shards.yaml', join(ws.dir, `two-${i}`)));
}
await redis.stop();

const s = (xs: number[]): string => (median(xs) / 1000).toFixed(2);
const ratio = (a: Timed[], b: Timed[], k: 'wall' | 'phase'): string => (median(a.map((t) => t[k])) / median(b.map((t) => t[k]))).toFixed(2);
console.log(`queue-shards: GPTQ W4A16 wiki-llama-8m, ${samples} calibration windows × 128 tokens, medians of ${runs} runs; load average during the runs ${Math.min(...load).toFixed(1)}–${Math.max(...load).toFixed(1)} on ${availableParallelism()} cores\n`);
console.log(
  table(
    ['build', 'run s', 'capture+Hessian s', 'phase vs 1 shard', 'shard steps per worker', 'Σ shard step s'],
    [
      ['1 shard, 1 worker × 1 thread', s(one.map((t) => t.wall)), s(one.map((t) => t.phase)), '1.00', '', ''],
      ['2 shards, 2 workers × 1 thread', s(two.map((t) => t.wall)), s(two.map((t) => t.phase)), ratio(two, one, 'phase'), two.map((t) => t.perWorker.join('+')).join(', '), s(two.map((t) => t.shardMs))],
    ],
  ),
);
await rm(ws.dir, { recursive: true, force: true });
