// Data-parallel SmoothQuant/AWQ calibration on the tiny model's layer 0: capture-shard steps over disjoint
// window ranges, reduced by the capture step, give SmoothQuant's max |X| bit for bit (a max of maxima is the
// max) and AWQ's mean |X| within 1e-6 relative (float64 sums in another order); the smoothquant and awq steps
// fed them choose the same scales. A shard reads only its own windows of the activation file.

import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { LLAMA_FAMILY, type Mapping } from '../../src/model/arch.js';
import { HfSource } from '../../src/model/source.js';
import { Runtime } from '../../src/ort/session.js';
import { shapesAllow } from '../../src/stages/mappings.js';
import { hiddenWindows, readHiddenWindows } from '../../src/steps/activations.js';
import { awqStep, type AwqParams } from '../../src/steps/awq.js';
import { captureStep, readStatistic, type CaptureParams, type Statistic } from '../../src/steps/capture.js';
import { captureShardStep, type CaptureShardParams } from '../../src/steps/capture-shard.js';
import { readLayerState } from '../../src/steps/layer-state.js';
import { smoothquantStep, type SmoothQuantParams } from '../../src/steps/smoothquant.js';
import type { StepContext } from '../../src/steps/types.js';
import { stepContext, writeTinyModel, type TinyModel } from './tiny-model.js';

const rt = new Runtime({ device: 'cpu', threads: 2 });
let tiny: TinyModel;
let src: HfSource;
// 12 windows of 512 tokens, run 4 windows per onnxruntime call (activations.ts layerBatch): shards hold whole
// batches, so 4 shards hold 0, 4, 4 and 4 windows, 3 shards 4 each
const [WINDOWS, SEQ, SHARDS] = [12, 512, 4];

beforeAll(async () => {
  tiny = await writeTinyModel(rt, 'capture-shard', WINDOWS, SEQ);
  src = await HfSource.open(tiny.modelDir);
});

afterAll(async () => {
  await src.close();
  await rt.close();
  await tiny.close();
});

const smoothMappings = (): Mapping[] => LLAMA_FAMILY.smoothquantMappings(src.config, 0).map((m) => ({ smooth: m.smooth, balance: [...m.balance] }));
const awqMappings = (): Mapping[] =>
  LLAMA_FAMILY.awqMappings(src.config, 0).filter((m) => shapesAllow(m, src.arch.layer(src.config, 0).linears)).map((m) => ({ smooth: m.smooth, balance: [...m.balance] }));
const modulesOf = (ms: Mapping[]): string[] => [...new Set(ms.map((m) => m.balance[0]!))];

/** the capture step's output directory: one pass (shards 1) or the reduce of `shards` capture-shard steps */
async function capture(statistic: Statistic, modules: string[], shards: number): Promise<string> {
  const params: CaptureParams = { layer: 0, statistic, modules };
  const ctx = await stepContext<CaptureParams>(rt, tiny, params, shards === 1 ? { hidden: tiny.embedDir } : {});
  if (shards > 1) {
    const dirs: string[] = [];
    for (let shard = 0; shard < shards; shard++) {
      const s = await stepContext<CaptureShardParams>(rt, tiny, { ...params, shard, shards }, { hidden: tiny.embedDir });
      await captureShardStep.run(s);
      dirs.push(s.outDir);
    }
    ctx.inputs['partials'] = dirs.map((dir, i) => ({ id: `shard.${i}`, kind: 'capture-shard', dir, result: null }));
  }
  await captureStep.run(ctx);
  return ctx.outDir;
}

/** the largest |a − b| / |a| (0 where both are 0) */
function maxRel(a: Float32Array, b: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs((a[i] as number) - (b[i] as number));
    if (d > 0) worst = Math.max(worst, d / Math.abs(a[i] as number));
  }
  return worst;
}

describe('capture shards', () => {
  test('a shard reads its own windows of the activation file, equal to the slice of the whole', async () => {
    expect(await hiddenWindows(tiny.embedDir)).toBe(WINDOWS);
    const part = await readHiddenWindows(tiny.embedDir, 3, 7);
    const H = src.config.hiddenSize;
    expect(part.dims).toEqual([4, SEQ, H]);
    expect(part.data).toEqual(tiny.embedded.data.subarray(3 * SEQ * H, 7 * SEQ * H));
    await expect(readHiddenWindows(tiny.embedDir, 10, 13)).rejects.toThrow(/rows \[10, 13\) are outside its 12 rows/);
  });

  test('SmoothQuant: 4 shards reduce to the one-pass max |X| and smoothed layer bit for bit', async () => {
    const modules = modulesOf(smoothMappings());
    const [one, four] = [await capture('absmax', modules, 1), await capture('absmax', modules, SHARDS)];
    for (const m of modules) expect(await readStatistic(four, m, 'absmax'), m).toEqual(await readStatistic(one, m, 'absmax'));
    const smooth = async (stats: string): Promise<{ dir: string; result: unknown }> => {
      const ctx = await stepContext<SmoothQuantParams>(rt, tiny, { layer: 0, smoothing_strength: 0.8, mappings: smoothMappings() }, { stats });
      return { dir: ctx.outDir, result: await smoothquantStep.run(ctx) };
    };
    const [a, b] = [await smooth(one), await smooth(four)];
    expect(b.result).toEqual(a.result);
    const [sa, sb] = [await readLayerState(a.dir, 0), await readLayerState(b.dir, 0)];
    for (const name of Object.keys(sa.tensors)) expect(sb.tensors[name]!.data, name).toEqual(sa.tensors[name]!.data);
  });

  test('AWQ: 4 (and 5, uneven) shards reduce to the one-pass mean |X| within 1e-6 relative, and the search picks the same scales', async () => {
    const mappings = awqMappings();
    const modules = modulesOf(mappings);
    const one = await capture('absmean', modules, 1);
    for (const shards of [SHARDS, 5]) {
      const many = await capture('absmean', modules, shards);
      for (const m of modules) {
        const rel = maxRel(await readStatistic(one, m, 'absmean'), await readStatistic(many, m, 'absmean'));
        console.log(`absmean of ${m}, ${shards} shards vs one pass: largest relative difference ${rel.toExponential(2)}`);
        expect(rel, m).toBeLessThan(1e-6);
      }
    }
    const awq = async (stats: string): Promise<{ dir: string; result: { mappings: { ratio: number; duo_scaling: boolean; scale: { min: number; max: number } }[] } }> => {
      const params: AwqParams = { layer: 0, modules: {}, mappings, duo_scaling: true, n_grid: 10 };
      const ctx: StepContext<AwqParams> = await stepContext<AwqParams>(rt, tiny, params, { stats, hidden: tiny.embedDir });
      return { dir: ctx.outDir, result: (await awqStep.run(ctx)) as never };
    };
    const [a, b] = [await awq(one), await awq(await capture('absmean', modules, SHARDS))];
    expect(b.result.mappings.map((m) => [m.ratio, m.duo_scaling])).toEqual(a.result.mappings.map((m) => [m.ratio, m.duo_scaling]));
    const [sa, sb] = [await readLayerState(a.dir, 0), await readLayerState(b.dir, 0)];
    let worst = 0;
    for (const name of Object.keys(sa.tensors)) worst = Math.max(worst, maxRel(sa.tensors[name]!.data, sb.tensors[name]!.data));
    console.log(`AWQ folded layer, 4 shards vs one pass: largest relative difference ${worst.toExponential(2)}`);
    expect(worst).toBeLessThan(1e-5);
  });

  test('the reduce refuses shards that do not cover the windows once, in order', async () => {
    const params: CaptureParams = { layer: 0, statistic: 'absmax', modules: ['mlp.gate_proj'] };
    const dirs: string[] = [];
    for (const shard of [0, 1, 2]) {
      const s = await stepContext<CaptureShardParams>(rt, tiny, { ...params, shard, shards: 3 }, { hidden: tiny.embedDir });
      await captureShardStep.run(s);
      dirs.push(s.outDir);
    }
    const reduce = async (which: string[]): Promise<unknown> => {
      const ctx = await stepContext<CaptureParams>(rt, tiny, params, {});
      ctx.inputs['partials'] = which.map((dir, i) => ({ id: `shard.${i}`, kind: 'capture-shard', dir, result: null }));
      return captureStep.run(ctx);
    };
    await expect(reduce([dirs[0]!, dirs[2]!])).rejects.toMatchObject({ reason: 'missing-statistic', message: expect.stringMatching(/holds windows \[8, 12\) of 12, expected 4 next/) });
    await expect(reduce(dirs.slice(0, 2))).rejects.toThrow(/cover windows \[0, 8\) of 12/);
    expect(await reduce(dirs)).toMatchObject({ tokens: WINDOWS * SEQ, shards: 3 });
  });
});
