// Data-parallel AWQ search on the tiny model's layer 0 (8 windows of 512 tokens, run 4 per onnxruntime call):
// per mapping, K awq-loss shards on the layer as the previous mapping's awq step left it, and that mapping's
// awq step over their sums, give the one-pass awq step's result: the same ratio per mapping, losses equal up to
// the float64 addition order, and the same folded tensors and codes bit for bit. Shards hold whole batches, so
// 4 shards hold 0, 4, 0 and 4 windows, 3 shards 0, 4 and 4. The same on a Mixture-of-Experts layer (qwen3_moe).

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { LLAMA_FAMILY, type Mapping } from '../../src/model/arch.js';
import { HfSource } from '../../src/model/source.js';
import { Runtime } from '../../src/ort/session.js';
import { presetScheme, type QuantArgs } from '../../src/quant/scheme.js';
import type { ModuleQuant } from '../../src/quant/module-quant.js';
import { shapesAllow } from '../../src/stages/mappings.js';
import { awqStep, type AwqParams } from '../../src/steps/awq.js';
import { awqLossStep, type AwqLossParams } from '../../src/steps/awq-loss.js';
import { captureStep, type CaptureParams } from '../../src/steps/capture.js';
import { readLayerState } from '../../src/steps/layer-state.js';
import type { Json } from '../../src/cache/key.js';
import { embed } from '../../src/model/embed.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { cutWindows, readDatasetText } from '../../src/model/windows.js';
import { layerBatch } from '../../src/steps/activations.js';
import { tensor } from '../../src/tensor.js';
import { UNROUTED, writeArchModel } from '../fixtures/arch-models.js';
import { hiddenDir, stepContext, writeTinyModel, type TinyModel } from './tiny-model.js';

const rt = new Runtime({ device: 'cpu', threads: 2 });
let tiny: TinyModel;
let src: HfSource;
let stats = '';
const [WINDOWS, SEQ] = [8, 512];

/** the planner's default mappings (v → o is dropped under grouped-query attention): self_attn, mlp and Linear parents */
const mappings = (): Mapping[] =>
  LLAMA_FAMILY.awqMappings(src.config, 0).filter((m) => shapesAllow(m, src.arch.layer(src.config, 0).linears)).map((m) => ({ smooth: m.smooth, balance: [...m.balance] }));
const W4A16_ASYM = presetScheme('W4A16_ASYM', ['Linear']).weights as QuantArgs;
const modules = (): Record<string, ModuleQuant> => Object.fromEntries(src.arch.layer(src.config, 0).linears.map((l) => [l.local, { weights: W4A16_ASYM, input_activations: null }]));
const params = (): AwqParams => ({ layer: 0, modules: modules(), mappings: mappings(), duo_scaling: 'both', n_grid: 10 });

beforeAll(async () => {
  tiny = await writeTinyModel(rt, 'awq-loss', WINDOWS, SEQ);
  src = await HfSource.open(tiny.modelDir);
  const capture = await stepContext<CaptureParams>(rt, tiny, { layer: 0, statistic: 'absmean', modules: [...new Set(mappings().map((m) => m.balance[0]!))] }, { hidden: tiny.embedDir });
  await captureStep.run(capture);
  stats = capture.outDir;
});

afterAll(async () => {
  await src.close();
  await rt.close();
  await tiny.close();
});

interface Run {
  dir: string;
  result: { mappings: { smooth: string; parent: string; ratio: number; duo_scaling: boolean; loss: number; identity_loss: number }[] };
}

/** a layer's search problem: the model, the step params, the capture and the activations */
interface Env {
  model: TinyModel;
  params: AwqParams;
  stats: string;
  hidden: string;
}

const env = (): Env => ({ model: tiny, params: params(), stats, hidden: tiny.embedDir });

/** the K awq-loss shard directories of `mapping` on the layer state `state` (undefined: the model's) */
async function lossShards(e: Env, mapping: number, shards: number, state: string | undefined): Promise<string[]> {
  const dirs: string[] = [];
  for (let shard = 0; shard < shards; shard++) {
    const ctx = await stepContext<AwqLossParams>(rt, e.model, { ...e.params, mapping, shard, shards }, { hidden: e.hidden, stats: e.stats, state });
    await awqLossStep.run(ctx);
    dirs.push(ctx.outDir);
  }
  return dirs;
}

/** mapping `mapping`'s awq step over `partials`, on the state (and its metrics) an earlier mapping step left */
async function reduce(e: Env, mapping: number, partials: string[], state?: { dir: string; result: Json }): Promise<{ dir: string; result: Json }> {
  const ctx = await stepContext<AwqParams>(rt, e.model, { ...e.params, mapping }, { stats: e.stats });
  if (state) ctx.inputs['state'] = { id: 'state', kind: 'awq', dir: state.dir, result: state.result };
  ctx.inputs['partials'] = partials.map((dir, i) => ({ id: `shard.${i}`, kind: 'awq-loss', dir, result: null }));
  return { dir: ctx.outDir, result: await awqStep.run(ctx) };
}

async function onePass(e: Env): Promise<Run> {
  const ctx = await stepContext<AwqParams>(rt, e.model, e.params, { stats: e.stats, hidden: e.hidden });
  return { dir: ctx.outDir, result: (await awqStep.run(ctx)) as never };
}

async function sharded(e: Env, shards: number): Promise<Run> {
  let state: { dir: string; result: Json } | undefined;
  for (let m = 0; m < e.params.mappings.length; m++) state = await reduce(e, m, await lossShards(e, m, shards, state?.dir), state);
  return state as never;
}

/** `many` against `one`: the same choice per mapping, losses within 1e-12 relative, tensors and codes bit for bit */
async function expectSame(e: Env, one: Run, many: Run, what: string): Promise<void> {
  const layer = e.params.layer;
  expect(many.result.mappings.map((m) => [m.smooth, m.ratio, m.duo_scaling])).toEqual(one.result.mappings.map((m) => [m.smooth, m.ratio, m.duo_scaling]));
  let worst = 0;
  for (const [i, m] of many.result.mappings.entries()) {
    const want = one.result.mappings[i]!;
    for (const [a, b] of [[want.loss, m.loss], [want.identity_loss, m.identity_loss]] as const) worst = Math.max(worst, a === b ? 0 : Math.abs(a - b) / a);
  }
  console.log(`awq search, ${what} vs one pass: largest relative loss difference ${worst.toExponential(2)}`);
  expect(worst).toBeLessThan(1e-12);
  const [sa, sb] = [await readLayerState(one.dir, layer), await readLayerState(many.dir, layer)];
  expect(Object.keys(sb.quant).sort()).toEqual(Object.keys(sa.quant).sort());
  for (const name of Object.keys(sa.tensors)) expect(sb.tensors[name]!.data, name).toEqual(sa.tensors[name]!.data);
  for (const [name, q] of Object.entries(sa.quant)) expect(sb.quant[name]!.codes.data, name).toEqual(q.codes.data);
}

describe('awq-loss shards', () => {
  test('4 shards (two empty) and 3 shards (one empty) per mapping: the one-pass ratios, losses within 1e-12, tensors and codes bit for bit', async () => {
    const one = await onePass(env());
    expect(one.result.mappings.map((m) => m.parent)).toEqual(['self_attn', 'mlp', 'linear']);
    for (const shards of [4, 3]) await expectSame(env(), one, await sharded(env(), shards), `${shards} shards`);
  });

  test('qwen3_moe (router beside gate/up, an up → down mapping per expert): 3 shards give the one-pass search', async () => {
    const model = { root: tiny.root, modelDir: join(tiny.root, 'qwen3_moe') } as TinyModel;
    await writeArchModel(model.modelDir, 'qwen3_moe', 0, 'f32');
    const msrc = await HfSource.open(model.modelDir);
    try {
      const cfg = msrc.config;
      const layer = UNROUTED.layer;
      const spec = msrc.arch.layer(cfg, layer);
      // 4 windows of 24 tokens repeated past two batches of the layer's runs (layerBatch windows each)
      const T = 24;
      const ids = cutWindows(loadTokenizer(model.modelDir).encode(readDatasetText(join(model.modelDir, 'calib.txt'))), T, 4);
      const x = embed(await msrc.tensor(msrc.arch.embedding), ids.data, cfg.features.embedScale);
      const reps = Math.ceil((2 * layerBatch(cfg, T)) / 4) + 1;
      const data = new Float32Array(reps * x.length);
      for (let r = 0; r < reps; r++) data.set(x, r * x.length);
      const hidden = await hiddenDir(tiny.root, tensor('float32', [4 * reps, T, cfg.hiddenSize], data));
      const mappings = msrc.arch.awqMappings(cfg, layer).filter((m) => shapesAllow(m, spec.linears)).map((m) => ({ smooth: m.smooth, balance: [...m.balance] }));
      const capture = await stepContext<CaptureParams>(rt, model, { layer, statistic: 'absmean', modules: [...new Set(mappings.map((m) => m.balance[0]!))] }, { hidden });
      await captureStep.run(capture);
      const modules = Object.fromEntries(spec.linears.filter((s) => s.role !== 'router').map((s) => [s.local, { weights: W4A16_ASYM, input_activations: null }]));
      const e: Env = { model, params: { layer, modules, mappings, duo_scaling: 'both', n_grid: 4 }, stats: capture.outDir, hidden };
      const one = await onePass(e);
      expect(one.result.mappings.map((m) => m.parent)).toEqual(expect.arrayContaining(['self_attn', 'mlp', 'linear']));
      await expectSame(e, one, await sharded(e, 3), 'qwen3_moe, 3 shards');
    } finally {
      await msrc.close();
    }
  });

  test("an earlier mapping's step folds without quantizing; the reduce refuses shards out of order or scored on other scales", async () => {
    const dirs = await lossShards(env(), 0, 3, undefined);
    const first = await reduce(env(), 0, dirs);
    expect(first.result).toMatchObject({ mapping: 0, shards: 3, mappings: [{ smooth: 'input_layernorm', parent: 'self_attn' }] });
    expect(first.result).not.toHaveProperty('modules');
    expect(Object.keys((await readLayerState(first.dir, 0)).quant)).toEqual([]);
    await expect(reduce(env(), 0, [dirs[0]!, dirs[2]!])).rejects.toMatchObject({ reason: 'awq-partials-mismatch', message: expect.stringMatching(/holds windows \[4, 8\) of 8, expected 0 next/) });
    await expect(reduce(env(), 0, dirs.slice(0, 2))).rejects.toThrow(/cover windows \[0, 4\) of 8/);
    // mapping 1's shards scored the mlp's candidates: another digest of scales
    const other = await lossShards(env(), 1, 3, first.dir);
    await expect(reduce(env(), 0, other)).rejects.toMatchObject({ reason: 'awq-partials-mismatch', message: expect.stringMatching(/scored other candidate scales/) });
    await expect(reduce(env(), 0, [])).rejects.toMatchObject({ reason: 'bad-mapping' });
  });
});
