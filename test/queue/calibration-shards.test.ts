// Data-parallel GPTQ calibration through the job queue, with real processes (redis-server, 2 `quantforge
// worker`s on the directory store the local run filled): GPTQ W4A16 on ../shared/models/wiki-llama-8m (16
// calibration windows of 512 tokens: one batch per shard) with calibration_shards 4 against the local 1-shard run. Perplexity within 0.1%, every layer's Hessians (the
// summed shards against a one-pass capture of the 1-shard run's own layer inputs) within 1e-5 relative.
// AWQ W4A16_ASYM (duo_scaling both) on wiki-llama-8m with calibration_shards 4 on 2 workers: the 1-shard choice
// per mapping, every code and the perplexity (the candidate losses are awq-loss shard steps per mapping).
// SmoothQuant + W8A8 on the example model with calibration_shards 2 on 2 workers: the 1-shard checkpoint,
// byte for byte, with both workers running capture shards.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readLayerState } from '../../src/steps/layer-state.js';
import { describeShared } from '../e2e/shared.js';
import { fingerprint, fingerprintDiff, runCli, type CliRun, type RunEvent } from '../reliability/workspace.js';
import { doneIds, startRedis, startWorker, sweepWorkspace, writeModel, type TestRedis, type WorkerProcess } from './queue-harness.js';
import { entryDirs, LAYERS, relDiff, shardedHessians, shardsWorkspace, SITES, unshardedHessians } from './shards-harness.js';

const SHARDS = 4;
let redis: TestRedis;
const workers: WorkerProcess[] = [];
let scratch = '';

beforeAll(async () => {
  redis = await startRedis();
  scratch = await mkdtemp(join(tmpdir(), 'qf-shards-scratch-'));
});
afterAll(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop('SIGKILL')));
  await redis?.stop();
  await rm(scratch, { recursive: true, force: true });
});

const perplexity = (r: CliRun): number => {
  const s = r.events.find((e: RunEvent) => e.event === 'summary');
  if (!s) throw new Error(`no summary (exit ${r.code}): ${r.stderr}`);
  return (s['metrics'] as { perplexity: { quantized: number } }).perplexity.quantized;
};

describeShared('calibration_shards through the queue', () => {
  test('GPTQ W4A16 on wiki-llama-8m, 4 shards on 2 workers: perplexity within 0.1% and Hessians within 1e-5 of the 1-shard run', async () => {
    // 16 windows of 512 tokens run 4 per onnxruntime call (activations.ts layerBatch): each shard holds one batch
    const ws = await shardsWorkspace(SHARDS, 16, 4, tmpdir(), 512);
    try {
      // one directory store: the queued run finds the calibration windows and the FP evaluation stored, so both
      // workers are free for the shard steps (the sharded gptq steps and the shard steps have keys of their own)
      const localStore = join(ws.dir, 'store');
      const queueStore = localStore;
      const local = await runCli(ws, ['run', 'recipe.yaml', '--json', '--device', 'cpu', '--threads', '1', '--cache-dir', localStore]);
      expect(local.code, local.stderr).toBe(0);

      for (let i = 0; i < 2; i++) workers.push(await startWorker(redis, ['--store', queueStore], ws.dir));
      const queued = await runCli(ws, ['run', 'recipe-shards.yaml', '--json', '--device', 'cpu', '--queue', redis.url, '--store', queueStore]);
      expect(queued.code, queued.stderr).toBe(0);
      const shardSteps = workers.map((w) => doneIds(w.events, 'ran').filter((id) => /\.shard\.\d+$/.test(id)));
      expect(shardSteps.flat().length).toBe(SHARDS * LAYERS);
      console.log(`shard steps per worker: ${shardSteps.map((s) => s.length).join(', ')}; all steps per worker: ${workers.map((w) => doneIds(w.events, 'ran').length).join(', ')}`);
      for (const s of shardSteps) expect(s.length).toBeGreaterThan(0);

      const [p1, p4] = [perplexity(local), perplexity(queued)];
      const pplDiff = Math.abs(p4 - p1) / p1;

      const localEntries = await entryDirs(ws.recipe, localStore);
      const queueEntries = await entryDirs(ws.sharded, queueStore);
      const [want, got] = [await unshardedHessians(localEntries, scratch), await shardedHessians(queueEntries, SHARDS)];
      let worst = 0;
      for (let l = 0; l < LAYERS; l++) for (const s of SITES) worst = Math.max(worst, relDiff(want[l]!.get(s)!, got[l]!.get(s)!));

      let differ = 0;
      let total = 0;
      for (let l = 0; l < LAYERS; l++) {
        const [a, b] = [await readLayerState(localEntries.get(`stage1.gptq/layer.${l}`)!, l), await readLayerState(queueEntries.get(`stage1.gptq/layer.${l}`)!, l)];
        for (const [m, q] of Object.entries(a.quant)) {
          const other = b.quant[m]!.codes.data;
          total += q.codes.data.length;
          q.codes.data.forEach((c, i) => (differ += c === other[i] ? 0 : 1));
        }
      }
      console.log(`calibration_shards ${SHARDS} on 2 workers vs 1 shard locally: perplexity ${p4} vs ${p1} (relative difference ${pplDiff.toExponential(2)}); worst per-layer Hessian relative difference ${worst.toExponential(2)}; ${differ} of ${total} weight codes differ (${((100 * differ) / total).toFixed(4)} %)`);
      expect(total).toBeGreaterThan(0);
      expect(pplDiff).toBeLessThan(1e-3);
      expect(worst).toBeLessThan(1e-5);
      // shards hold whole batches of the one-pass run (float32 Grams per batch), so the Hessians and codes agree
      expect(differ).toBe(0);
    } finally {
      await Promise.all(workers.splice(0).map((w) => w.stop()));
      await rm(ws.dir, { recursive: true, force: true });
    }
  });
});

describeShared('calibration_shards through the queue, AWQ', () => {
  test('AWQ W4A16_ASYM duo_scaling both on wiki-llama-8m, 4 shards on 2 workers: the 1-shard ratios per mapping, codes and perplexity', async () => {
    // 16 windows of 512 tokens run 4 per onnxruntime call: each shard holds one batch of every mapping's losses
    const stage = '{ kind: awq, scheme: W4A16_ASYM, duo_scaling: both, targets: [Linear], ignore: [lm_head] }';
    const ws = await shardsWorkspace(SHARDS, 16, 4, tmpdir(), 512, stage);
    try {
      const store = join(ws.dir, 'store');
      const local = await runCli(ws, ['run', 'recipe.yaml', '--json', '--device', 'cpu', '--threads', '1', '--cache-dir', store]);
      expect(local.code, local.stderr).toBe(0);
      for (let i = 0; i < 2; i++) workers.push(await startWorker(redis, ['--store', store], ws.dir));
      const queued = await runCli(ws, ['run', 'recipe-shards.yaml', '--json', '--device', 'cpu', '--queue', redis.url, '--store', store]);
      expect(queued.code, queued.stderr).toBe(0);
      const lossShards = workers.map((w) => doneIds(w.events, 'ran').filter((id) => /mapping\.\d+\.shard\.\d+$/.test(id)));
      console.log(`awq-loss shard steps per worker: ${lossShards.map((s) => s.length).join(', ')}`);
      for (const s of lossShards) expect(s.length).toBeGreaterThan(0);

      // every layer's last awq step lists every mapping's choice (earlier mapping steps pass theirs on); queued layers
      // can finish in any order, so the events are compared by step id
      const choices = (r: CliRun): unknown[] =>
        r.events
          .filter((e) => e.event === 'step-done' && e['kind'] === 'awq' && /layer\.\d+$/.test(String(e.id)))
          .sort((a, b) => String(a.id).localeCompare(String(b.id), 'en', { numeric: true }))
          .flatMap((e) => (e['metrics'] as { mappings: { smooth: string; ratio: number; duo_scaling: boolean }[] }).mappings.map((m) => [e.id, m.smooth, m.ratio, m.duo_scaling]));
      const [want, got] = [choices(local), choices(queued)];
      // qkv, gate/up and up → down per layer (grouped-query attention drops v → o)
      expect(want.length).toBe(3 * LAYERS);
      expect(got).toEqual(want);
      expect(lossShards.flat().length).toBe(SHARDS * want.length);

      const [localEntries, queueEntries] = [await entryDirs(ws.recipe, store), await entryDirs(ws.sharded, store)];
      let differ = 0;
      let total = 0;
      for (let l = 0; l < LAYERS; l++) {
        const [a, b] = [await readLayerState(localEntries.get(`stage1.awq/layer.${l}`)!, l), await readLayerState(queueEntries.get(`stage1.awq/layer.${l}`)!, l)];
        for (const [m, q] of Object.entries(a.quant)) {
          const other = b.quant[m]!.codes.data;
          total += q.codes.data.length;
          q.codes.data.forEach((c, i) => (differ += c === other[i] ? 0 : 1));
        }
      }
      const [p1, p4] = [perplexity(local), perplexity(queued)];
      const pplDiff = Math.abs(p4 - p1) / p1;
      const ms = (events: readonly RunEvent[], kind: string): number => Math.round(events.filter((e) => e.event === 'step-done' && e.result === 'ran' && e['kind'] === kind).reduce((t, e) => t + Number(e['ms']), 0));
      const workerMs = (kind: string): number => workers.reduce((t, w) => t + ms(w.events, kind), 0);
      console.log(`AWQ search step time: 1 shard Σ awq ${ms(local.events, 'awq')} ms; 4 shards Σ awq-loss ${workerMs('awq-loss')} ms + Σ awq ${workerMs('awq')} ms over 2 workers; runs ${Math.round(Number(local.events.find((e) => e.event === 'summary')?.['ms']))} / ${Math.round(Number(queued.events.find((e) => e.event === 'summary')?.['ms']))} ms`);
      console.log(`AWQ calibration_shards ${SHARDS} on 2 workers vs 1 shard locally: perplexity ${p4} vs ${p1} (relative difference ${pplDiff.toExponential(2)}); ${differ} of ${total} weight codes differ`);
      expect(total).toBeGreaterThan(0);
      expect(pplDiff).toBeLessThan(1e-3);
      // each shard sums the one-pass run's float32 chunks: the same choices fold the same scales, so the same codes
      expect(differ).toBe(0);
    } finally {
      await Promise.all(workers.splice(0).map((w) => w.stop()));
      await rm(ws.dir, { recursive: true, force: true });
    }
  });
});

describe('calibration_shards through the queue, smoothing', () => {
  test('SmoothQuant + W8A8 on the example model, 2 shards on 2 workers: the 1-shard checkpoint byte for byte', async () => {
    const model = await writeModel(await mkdtemp(join(scratch, 'model-')));
    const ws = await sweepWorkspace(model, scratch);
    const text = await readFile(ws.recipe, 'utf8');
    await writeFile(join(ws.dir, 'recipe-shards.yaml'), `${text}parallel: { calibration_shards: 2 }\n`);
    const set = ['--set', 'stages[0].smoothing_strength=0.8'];
    const checkpoint = async (): Promise<Map<string, string>> => {
      const all = [...(await fingerprint(join(ws.dir, 'out/ct')))!].filter(([f]) => f !== 'recipe.yaml' && f !== 'quantforge.lock.json');
      await rm(join(ws.dir, 'out/ct'), { recursive: true, force: true });
      return new Map(all);
    };
    const store = join(ws.dir, 'store');
    const local = await runCli(ws, ['run', 'recipe.yaml', '--json', '--device', 'cpu', '--threads', '1', '--cache-dir', store, ...set]);
    expect(local.code, local.stderr).toBe(0);
    const want = await checkpoint();
    try {
      for (let i = 0; i < 2; i++) workers.push(await startWorker(redis, ['--store', store], ws.dir));
      const queued = await runCli(ws, ['run', 'recipe-shards.yaml', '--json', '--device', 'cpu', '--queue', redis.url, '--store', store, ...set]);
      expect(queued.code, queued.stderr).toBe(0);
      expect(fingerprintDiff(want, await checkpoint())).toEqual([]);
      const shards = workers.map((w) => doneIds(w.events, 'ran').filter((id) => /capture\.\d+\.shard\.\d+$/.test(id)));
      console.log(`smoothquant capture shards per worker: ${shards.map((s) => s.length).join(', ')}`);
      expect(shards.flat().length).toBeGreaterThan(0);
      expect(shards.flat().length % 2).toBe(0);
      for (const s of shards) expect(s.length).toBeGreaterThan(0);
    } finally {
      await Promise.all(workers.splice(0).map((w) => w.stop()));
    }
  });
});
