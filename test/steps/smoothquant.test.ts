// capture → smoothquant through their StepImpls on the tiny example model (planted outlier channels): the
// transform alone must leave each layer's outputs and the model's logits unchanged while flattening activations.

import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { LLAMA_FAMILY, type Mapping } from '../../src/model/arch.js';
import { runDecoderLayer } from '../../src/graphs/layer-runner.js';
import { HfSource } from '../../src/model/source.js';
import { Runtime } from '../../src/ort/session.js';
import { tensor, type Tensor } from '../../src/tensor.js';
import { captureStep, readStatistic, type CaptureParams } from '../../src/steps/capture.js';
import { readLayerState, type LayerState } from '../../src/steps/layer-state.js';
import { foldScales } from '../../src/steps/smoothing.js';
import { smoothquantStep, type SmoothQuantParams } from '../../src/steps/smoothquant.js';
import type { StepContext } from '../../src/steps/types.js';
import { finalLogits, hiddenDir as writeHiddenDir, relChange, stepContext, writeTinyModel, type TinyModel } from './tiny-model.js';

const rt = new Runtime({ device: 'cpu', threads: 2 });
let tiny: TinyModel;
let src: HfSource;
let layer0: Tensor<'float32'>;
const mappings = (): Mapping[] => LLAMA_FAMILY.smoothquantMappings(src.config, 0).map((m) => ({ smooth: m.smooth, balance: [...m.balance] }));

beforeAll(async () => {
  tiny = await writeTinyModel(rt, 'smoothquant', 8, 32);
  src = await HfSource.open(tiny.modelDir);
  layer0 = tiny.embedded;
});

afterAll(async () => {
  await src.close();
  await rt.close();
  await tiny.close();
});

const context = <P>(params: P, inputs: Record<string, string | undefined>): Promise<StepContext<P>> => stepContext(rt, tiny, params, inputs);
const hiddenDir = (h: Tensor<'float32'>): Promise<string> => writeHiddenDir(tiny.root, h);
const logits = (x: Tensor<'float32'>): Promise<Float32Array> => finalLogits(rt, src, x);

const linears = () => src.arch.layer(src.config, 0).linears;
const forward = async (weights: Record<string, Tensor>, x: Tensor<'float32'>): Promise<Tensor<'float32'>> =>
  (await runDecoderLayer(rt, src.config, src.arch.layer(src.config, 0), weights, x))['out'] as Tensor<'float32'>;

async function smoothLayer(layer: number, hidden: string, alpha = 0.8): Promise<StepContext<SmoothQuantParams>> {
  const capture = await context<CaptureParams>({ layer, statistic: 'absmax', modules: ['self_attn.q_proj', 'mlp.gate_proj'] }, { hidden });
  await captureStep.run(capture);
  const ctx = await context<SmoothQuantParams>({ layer, smoothing_strength: alpha, mappings: mappings() }, { stats: capture.outDir });
  await smoothquantStep.run(ctx);
  return ctx;
}

/** largest channel statistic over the mean one: how much the outliers stand out */
const spread = (s: Float32Array): number => Math.max(...s) / (s.reduce((a, b) => a + b, 0) / s.length);

describe('smoothquant step', () => {
  test('leaves the layer output unchanged while folding scales into norms and Linears', async () => {
    const hidden = await hiddenDir(layer0);
    const ctx = await smoothLayer(0, hidden);
    const smoothed = await readLayerState(ctx.outDir, 0);
    const base = await src.layer(0);
    expect(relChange((await forward(base, layer0)).data, (await forward(smoothed.tensors, layer0)).data)).toBeLessThan(1e-4);
    // norm_j · W[:, j] is invariant; the norm itself changed
    const n0 = base['input_layernorm.weight']!.data;
    const n1 = smoothed.tensors['input_layernorm.weight']!.data;
    const q0 = base['self_attn.q_proj.weight']!.data;
    const q1 = smoothed.tensors['self_attn.q_proj.weight']!.data;
    for (const j of [0, 5, 100]) expect(n1[j]! * q1[3 * 256 + j]!).toBeCloseTo(n0[j]! * q0[3 * 256 + j]!, 5);
    expect(relChange(n0, n1)).toBeGreaterThan(0.1);
  });

  test('flattens the per-channel activation range of the planted outliers', async () => {
    const hidden = await hiddenDir(layer0);
    const ctx = await smoothLayer(0, hidden);
    const before = await context<CaptureParams>({ layer: 0, statistic: 'absmax', modules: ['self_attn.q_proj'] }, { hidden });
    const after = await context<CaptureParams>({ layer: 0, statistic: 'absmax', modules: ['self_attn.q_proj'] }, { hidden, state: ctx.outDir });
    await captureStep.run(before);
    await captureStep.run(after);
    const a = spread(await readStatistic(before.outDir, 'self_attn.q_proj', 'absmax'));
    const b = spread(await readStatistic(after.outDir, 'self_attn.q_proj', 'absmax'));
    expect(b).toBeLessThan(a / 2);
  });

  test('reports the scale range of every mapping', async () => {
    const hidden = await hiddenDir(layer0);
    const capture = await context<CaptureParams>({ layer: 0, statistic: 'absmax', modules: ['self_attn.q_proj', 'mlp.gate_proj'] }, { hidden });
    await captureStep.run(capture);
    const ctx = await context<SmoothQuantParams>({ layer: 0, smoothing_strength: 0.5, mappings: mappings() }, { stats: capture.outDir });
    const result = (await smoothquantStep.run(ctx)) as { mappings: { smooth: string; scale: { min: number; max: number; mean: number } }[] };
    expect(result.mappings.map((m) => m.smooth)).toEqual(['input_layernorm', 'post_attention_layernorm']);
    for (const m of result.mappings) {
      expect(m.scale.min).toBeGreaterThan(0);
      expect(m.scale.max).toBeGreaterThan(m.scale.mean);
      expect(m.scale.mean).toBeGreaterThanOrEqual(m.scale.min);
    }
  });

  test('leaves the whole model\'s logits unchanged (every layer smoothed)', async () => {
    let fp = layer0;
    let sq = layer0;
    for (let l = 0; l < src.config.numLayers; l++) {
      const ctx = await smoothLayer(l, await hiddenDir(fp));
      sq = await forward((await readLayerState(ctx.outDir, l)).tensors, sq);
      fp = await forward(await src.layer(l), fp);
    }
    expect(relChange(await logits(fp), await logits(sq))).toBeLessThan(1e-4);
  });

  test('rejects a mapping whose balance layers read different activations', async () => {
    const hidden = await hiddenDir(layer0);
    const capture = await context<CaptureParams>({ layer: 0, statistic: 'absmax', modules: ['self_attn.q_proj'] }, { hidden });
    await captureStep.run(capture);
    const bad = [{ smooth: 'input_layernorm', balance: ['self_attn.q_proj', 'mlp.gate_proj'] }];
    const ctx = await context<SmoothQuantParams>({ layer: 0, smoothing_strength: 0.8, mappings: bad }, { stats: capture.outDir });
    await expect(smoothquantStep.run(ctx)).rejects.toMatchObject({ reason: 'bad-mapping' });
  });
});

describe('foldScales', () => {
  test('a Linear smoothing another (v → o) keeps o(v(x)) and divides the bias', () => {
    // v: [3 out, 2 in] with bias, o: [2 out, 3 in]
    const state: LayerState = {
      layer: 0,
      tensors: {
        'self_attn.v_proj.weight': tensor('float32', [3, 2], Float32Array.of(1, 2, 3, 4, 5, 6)),
        'self_attn.v_proj.bias': tensor('float32', [3], Float32Array.of(1, -1, 2)),
        'self_attn.o_proj.weight': tensor('float32', [2, 3], Float32Array.of(1, 0, 2, -1, 3, 1)),
      },
      quant: {},
    };
    const apply = (t: Record<string, Tensor<'float32'>>, x: number[]): number[] => {
      const v = [0, 1, 2].map((r) => t['self_attn.v_proj.weight']!.data[r * 2]! * x[0]! + t['self_attn.v_proj.weight']!.data[r * 2 + 1]! * x[1]! + t['self_attn.v_proj.bias']!.data[r]!);
      return [0, 1].map((r) => v.reduce((s, vi, i) => s + t['self_attn.o_proj.weight']!.data[r * 3 + i]! * vi, 0));
    };
    const before = apply(state.tensors, [0.5, -2]);
    foldScales(state.tensors, { smooth: 'self_attn.v_proj', balance: ['self_attn.o_proj'] }, Float32Array.of(2, 0.5, 4), 0);
    expect(Array.from(state.tensors['self_attn.v_proj.bias']!.data)).toEqual([0.5, -2, 0.5]);
    expect(Array.from(state.tensors['self_attn.v_proj.weight']!.data)).toEqual([0.5, 1, 6, 8, 1.25, 1.5]);
    apply(state.tensors, [0.5, -2]).forEach((v, i) => expect(v).toBeCloseTo(before[i]!, 5));
  });

  test('refuses scales whose length differs from the smooth op', () => {
    const tensors = { 'input_layernorm.weight': tensor('float32', [4]), 'self_attn.q_proj.weight': tensor('float32', [2, 4]) };
    expect(() => foldScales(tensors, { smooth: 'input_layernorm', balance: ['self_attn.q_proj'] }, Float32Array.of(1, 2), 0)).toThrow(/4 channels but the mapping's scales have 2/);
  });
});


