// Data-parallel AWQ search on the tiny model's layer 0 (8 windows of 512 tokens, run 4 per onnxruntime call):
// per mapping, K awq-loss shards on the layer as the previous mapping's awq step left it, and that mapping's
// awq step over their sums, give the one-pass awq step's result: the same ratio per mapping, losses equal up to
// the float64 addition order, and the same folded tensors and codes bit for bit. Shards hold whole batches, so
// 4 shards hold 0, 4, 0 and 4 windows, 3 shards 0, 4 and 4.

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
import { stepContext, writeTinyModel, type TinyModel } from './tiny-model.js';

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

/** the K awq-loss shard directories of `mapping` on the layer state `state` (undefined: the model's) */
async function lossShards(mapping: number, shards: number, state: string | undefined): Promise<string[]> {
  const dirs: string[] = [];
  for (let shard = 0; shard < shards; shard++) {
    const ctx = await stepContext<AwqLossParams>(rt, tiny, { ...params(), mapping, shard, shards }, { hidden: tiny.embedDir, stats, state });
    await awqLossStep.run(ctx);
    dirs.push(ctx.outDir);
  }
  return dirs;
}

/** mapping `mapping`'s awq step over `partials`, on the state (and its metrics) an earlier mapping step left */
async function reduce(mapping: number, partials: string[], state?: { dir: string; result: Json }): Promise<{ dir: string; result: Json }> {
  const ctx = await stepContext<AwqParams>(rt, tiny, { ...params(), mapping }, { stats });
  if (state) ctx.inputs['state'] = { id: 'state', kind: 'awq', dir: state.dir, result: state.result };
  ctx.inputs['partials'] = partials.map((dir, i) => ({ id: `shard.${i}`, kind: 'awq-loss', dir, result: null }));
  return { dir: ctx.outDir, result: await awqStep.run(ctx) };
}

async function onePass(): Promise<Run> {
  const ctx = await stepContext<AwqParams>(rt, tiny, params(), { stats, hidden: tiny.embedDir });
  return { dir: ctx.outDir, result: (await awqStep.run(ctx)) as never };
}

async function sharded(shards: number): Promise<Run> {
  let state: { dir: string; result: Json } | undefined;
  for (let m = 0; m < mappings().length; m++) state = await reduce(m, await lossShards(m, shards, state?.dir), state);
  return state as never;
}

describe('awq-loss shards', () => {
  test('4 shards (two empty) and 3 shards (one empty) per mapping: the one-pass ratios, losses within 1e-12, tensors and codes bit for bit', async () => {
    const one = await onePass();
    expect(one.result.mappings.map((m) => m.parent)).toEqual(['self_attn', 'mlp', 'linear']);
    const [sa] = [await readLayerState(one.dir, 0)];
    for (const shards of [4, 3]) {
      const many = await sharded(shards);
      expect(many.result.mappings.map((m) => [m.smooth, m.ratio, m.duo_scaling])).toEqual(one.result.mappings.map((m) => [m.smooth, m.ratio, m.duo_scaling]));
      let worst = 0;
      for (const [i, m] of many.result.mappings.entries()) {
        const want = one.result.mappings[i]!;
        for (const [a, b] of [[want.loss, m.loss], [want.identity_loss, m.identity_loss]] as const) worst = Math.max(worst, Math.abs(a - b) / a);
      }
      console.log(`awq search, ${shards} shards vs one pass: largest relative loss difference ${worst.toExponential(2)}`);
      expect(worst).toBeLessThan(1e-12);
      const sb = await readLayerState(many.dir, 0);
      expect(Object.keys(sb.quant).sort()).toEqual(Object.keys(sa.quant).sort());
      for (const name of Object.keys(sa.tensors)) expect(sb.tensors[name]!.data, name).toEqual(sa.tensors[name]!.data);
      for (const [name, q] of Object.entries(sa.quant)) expect(sb.quant[name]!.codes.data, name).toEqual(q.codes.data);
    }
  });

  test("an earlier mapping's step folds without quantizing; the reduce refuses shards out of order or scored on other scales", async () => {
    const dirs = await lossShards(0, 3, undefined);
    const first = await reduce(0, dirs);
    expect(first.result).toMatchObject({ mapping: 0, shards: 3, mappings: [{ smooth: 'input_layernorm', parent: 'self_attn' }] });
    expect(first.result).not.toHaveProperty('modules');
    expect(Object.keys((await readLayerState(first.dir, 0)).quant)).toEqual([]);
    await expect(reduce(0, [dirs[0]!, dirs[2]!])).rejects.toMatchObject({ reason: 'awq-partials-mismatch', message: expect.stringMatching(/holds windows \[4, 8\) of 8, expected 0 next/) });
    await expect(reduce(0, dirs.slice(0, 2))).rejects.toThrow(/cover windows \[0, 4\) of 8/);
    // mapping 1's shards scored the mlp's candidates: another digest of scales
    const other = await lossShards(1, 3, first.dir);
    await expect(reduce(0, other)).rejects.toMatchObject({ reason: 'awq-partials-mismatch', message: expect.stringMatching(/scored other candidate scales/) });
    await expect(reduce(0, [])).rejects.toMatchObject({ reason: 'bad-mapping' });
  });
});
