// AWQ search shards: what the awq-loss steps (recipe parallel.calibration_shards K) cost against the one-pass awq
// step, on one decoder layer, all in this process one after another (one Runtime, so no model or session is
// shared differently than a worker's thread would): the one-pass awq step over every window, against K awq-loss
// steps per mapping plus an awq step per mapping that sums them. Wall and CPU time (user + system, less sensitive
// to other load) of each, medians of --runs runs interleaved. Same ratios and tensors are checked, not assumed.
//
//   npx tsx bench/awq-shards.ts [modelDir] [--shards 4] [--runs 2] [--samples 16] [--seq-len 512] [--threads 1]

import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { presetScheme, type QuantArgs } from '../src/quant/scheme.js';
import type { Json } from '../src/cache/key.js';
import { embed } from '../src/model/embed.js';
import { HfSource } from '../src/model/source.js';
import { loadTokenizer } from '../src/model/tokenizer.js';
import { cutWindows, readDatasetText } from '../src/model/windows.js';
import { Runtime } from '../src/ort/session.js';
import { shapesAllow } from '../src/stages/mappings.js';
import { writeHidden } from '../src/steps/activations.js';
import { awqStep, type AwqParams } from '../src/steps/awq.js';
import { awqLossStep, type AwqLossParams } from '../src/steps/awq-loss.js';
import { captureStep, type CaptureParams } from '../src/steps/capture.js';
import { readLayerState } from '../src/steps/layer-state.js';
import type { StepContext } from '../src/steps/types.js';
import { tensor } from '../src/tensor.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { shards: { type: 'string', default: '4' }, runs: { type: 'string', default: '2' }, samples: { type: 'string', default: '16' }, 'seq-len': { type: 'string', default: '512' }, threads: { type: 'string', default: '1' } },
});
const modelDir = positionals[0] ?? join(import.meta.dirname, '../../shared/models/wiki-llama-8m');
const calib = join(import.meta.dirname, '../../shared/data/wiki-calib.txt');
const [K, runs, samples, T] = [Number(values.shards), Number(values.runs), Number(values.samples), Number(values['seq-len'])];
const rt = new Runtime({ device: 'cpu', threads: Number(values.threads) });
const scratch = mkdtempSync(join(tmpdir(), 'qf-bench-awq-shards-'));
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

function context<P>(params: P, inputs: Record<string, string | undefined>): StepContext<P> {
  const ins: StepContext<P>['inputs'] = {};
  for (const [role, dir] of Object.entries(inputs)) if (dir) ins[role] = { id: role, kind: role, dir, result: null };
  return { id: 'bench', params, inputs: ins, files: {}, modelDir, outDir: mkdtempSync(join(scratch, 'step-')), runtime: rt, progress: () => {}, warn: () => {}, signal: new AbortController().signal };
}

/** wall and CPU ms of `f` */
async function timed<T>(f: () => Promise<T>): Promise<{ value: T; wall: number; cpu: number }> {
  const [t0, c0] = [performance.now(), process.cpuUsage()];
  const value = await f();
  const c = process.cpuUsage(c0);
  return { value, wall: performance.now() - t0, cpu: (c.user + c.system) / 1000 };
}

const src = await HfSource.open(modelDir);
const cfg = src.config;
const linears = src.arch.layer(cfg, 0).linears;
const mappings = src.arch.awqMappings(cfg, 0).filter((m) => shapesAllow(m, linears)).map((m) => ({ smooth: m.smooth, balance: [...m.balance] }));
const weights = presetScheme('W4A16_ASYM', ['Linear']).weights as QuantArgs;
const params: AwqParams = { layer: 0, modules: Object.fromEntries(linears.map((l) => [l.local, { weights, input_activations: null }])), mappings, duo_scaling: 'both', n_grid: 20 };
const ids = cutWindows(loadTokenizer(modelDir).encode(readDatasetText(calib)), T, samples);
const hidden = mkdtempSync(join(scratch, 'hidden-'));
await writeHidden(hidden, tensor('float32', [ids.dims[0] as number, T, cfg.hiddenSize], embed(await src.tensor(src.arch.embedding), ids.data)));
const cap = context<CaptureParams>({ layer: 0, statistic: 'absmean', modules: [...new Set(mappings.map((m) => m.balance[0]!))] }, { hidden });
await captureStep.run(cap);
const stats = cap.outDir;

async function onePass(): Promise<string> {
  const ctx = context(params, { stats, hidden });
  await awqStep.run(ctx);
  return ctx.outDir;
}

/** every mapping's K shards, then its awq step; the shards' and the reduces' times apart */
async function sharded(): Promise<{ dir: string; shard: { wall: number; cpu: number }; reduce: { wall: number; cpu: number } }> {
  const shard = { wall: 0, cpu: 0 };
  const reduce = { wall: 0, cpu: 0 };
  let state: { dir: string; result: Json } | undefined;
  for (let mapping = 0; mapping < mappings.length; mapping++) {
    const dirs: string[] = [];
    for (let s = 0; s < K; s++) {
      const ctx = context<AwqLossParams>({ ...params, mapping, shard: s, shards: K }, { hidden, stats, state: state?.dir });
      const t = await timed(() => awqLossStep.run(ctx));
      [shard.wall, shard.cpu] = [shard.wall + t.wall, shard.cpu + t.cpu];
      dirs.push(ctx.outDir);
    }
    const ctx = context<AwqParams>({ ...params, mapping }, { stats });
    if (state) ctx.inputs['state'] = { id: 'state', kind: 'awq', dir: state.dir, result: state.result };
    ctx.inputs['partials'] = dirs.map((dir, i) => ({ id: `shard.${i}`, kind: 'awq-loss', dir, result: null }));
    const t = await timed(() => awqStep.run(ctx));
    [reduce.wall, reduce.cpu] = [reduce.wall + t.wall, reduce.cpu + t.cpu];
    state = { dir: ctx.outDir, result: t.value };
  }
  return { dir: state!.dir, shard, reduce };
}

const rows: { one: { wall: number; cpu: number }; shard: { wall: number; cpu: number }; reduce: { wall: number; cpu: number } }[] = [];
const load: number[] = [];
let same = true;
for (let r = 0; r < runs; r++) {
  const one = await timed(onePass);
  const many = await sharded();
  const [a, b] = [await readLayerState(one.value, 0), await readLayerState(many.dir, 0)];
  for (const [m, q] of Object.entries(a.quant)) same &&= q.codes.data.every((c, i) => c === b.quant[m]!.codes.data[i]);
  rows.push({ one, shard: many.shard, reduce: many.reduce });
  load.push(loadavg()[0]!);
}
const s = (ms: number): string => (ms / 1000).toFixed(1);
const pick = (f: (r: (typeof rows)[number]) => number): number => median(rows.map(f));
console.log(`${modelDir} layer 0, ${mappings.length} mappings, ${samples} × ${T} tokens, ${K} shards, ${values.threads} thread(s), ${runs} runs, load ${Math.min(...load).toFixed(1)}–${Math.max(...load).toFixed(1)}; same codes: ${same}`);
console.log('| search | wall s | CPU s | CPU vs one pass |\n|---|---|---|---|');
console.log(`| one-pass awq step | ${s(pick((r) => r.one.wall))} | ${s(pick((r) => r.one.cpu))} | 1.00 |`);
console.log(`| ${K * mappings.length} awq-loss steps | ${s(pick((r) => r.shard.wall))} | ${s(pick((r) => r.shard.cpu))} | ${(pick((r) => r.shard.cpu) / pick((r) => r.one.cpu)).toFixed(2)} |`);
console.log(`| ${mappings.length} per-mapping awq steps | ${s(pick((r) => r.reduce.wall))} | ${s(pick((r) => r.reduce.cpu))} | ${(pick((r) => r.reduce.cpu) / pick((r) => r.one.cpu)).toFixed(2)} |`);
await src.close();
await rt.close();
rmSync(scratch, { recursive: true, force: true });
