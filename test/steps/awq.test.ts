// capture → awq through their StepImpls on the tiny example model (planted outlier channels): folding alone keeps
// the model's function; with a scheme the layer's output error beats round-to-nearest on the same layer.

import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { presetScheme, resolveQuantArgs, type QuantArgs } from '../../src/quant/scheme.js';
import { GGUF_ARGS } from '../../src/quant/gguf-scheme.js';
import { packGgufWeight } from '../../src/quant/gguf-weight.js';
import { decodeTensor } from '../../src/quant/gguf-quantize.js';
import { GGML_TYPES } from '../../src/quant/gguf-types.js';
import { LLAMA_FAMILY, type Mapping } from '../../src/model/arch.js';
import { runDecoderLayer } from '../../src/graphs/layer-runner.js';
import { HfSource } from '../../src/model/source.js';
import { Runtime } from '../../src/ort/session.js';
import { tensor, type Tensor } from '../../src/tensor.js';
import { awqStep, type AwqParams } from '../../src/steps/awq.js';
import { captureStep, type CaptureParams } from '../../src/steps/capture.js';
import { readLayerState } from '../../src/steps/layer-state.js';
import type { ModuleQuant } from '../../src/quant/module-quant.js';
import { shapesAllow } from '../../src/stages/mappings.js';
import { rtnStep } from '../../src/steps/rtn.js';
import type { StepContext } from '../../src/steps/types.js';
import { finalLogits, hiddenDir as writeHiddenDir, relChange, stepContext, writeTinyModel, type TinyModel } from './tiny-model.js';

const rt = new Runtime({ device: 'cpu', threads: 2 });
let tiny: TinyModel;
let src: HfSource;
let layer0: Tensor<'float32'>;
let hidden0: string;

beforeAll(async () => {
  tiny = await writeTinyModel(rt, 'awq', 8, 32);
  src = await HfSource.open(tiny.modelDir);
  layer0 = tiny.embedded;
  hidden0 = tiny.embedDir;
});

afterAll(async () => {
  await src.close();
  await rt.close();
  await tiny.close();
});

const context = <P>(params: P, inputs: Record<string, string | undefined>): Promise<StepContext<P>> => stepContext(rt, tiny, params, inputs);
const hiddenDir = (h: Tensor<'float32'>): Promise<string> => writeHiddenDir(tiny.root, h);
const logits = (x: Tensor<'float32'>): Promise<Float32Array> => finalLogits(rt, src, x);

/** the planner's default mappings: v → o is dropped under grouped-query attention (8 heads, 4 kv heads) */
const mappings = (): Mapping[] =>
  LLAMA_FAMILY.awqMappings(src.config, 0).filter((m) => shapesAllow(m, src.arch.layer(src.config, 0).linears)).map((m) => ({ smooth: m.smooth, balance: [...m.balance] }));

const W4A16_ASYM = presetScheme('W4A16_ASYM', ['Linear']).weights as QuantArgs;
const allModules = (): Record<string, ModuleQuant> => Object.fromEntries(src.arch.layer(src.config, 0).linears.map((l) => [l.local, { weights: W4A16_ASYM, input_activations: null }]));

const forward = async (weights: Record<string, Tensor>, x: Tensor<'float32'>): Promise<Float32Array> =>
  (await runDecoderLayer(rt, src.config, src.arch.layer(src.config, 0), weights, x))['out']!.data as Float32Array;

async function runAwq(layer: number, hidden: string, params: Partial<AwqParams>): Promise<{ ctx: StepContext<AwqParams>; result: Record<string, unknown> }> {
  const capture = await context<CaptureParams>({ layer, statistic: 'absmean', modules: mappings().map((m) => m.balance[0]!) }, { hidden });
  await captureStep.run(capture);
  const ctx = await context<AwqParams>({ layer, modules: {}, mappings: mappings(), duo_scaling: true, n_grid: 10, ...params }, { stats: capture.outDir, hidden, state: undefined });
  const result = (await awqStep.run(ctx)) as Record<string, unknown>;
  return { ctx, result };
}

interface MappingReport {
  smooth: string;
  ratio: number;
  duo_scaling: boolean;
  loss: number;
  identity_loss: number;
  scale: { min: number; max: number };
}

describe('awq step', () => {
  test('folding alone (no scheme) leaves every layer output and the logits unchanged', async () => {
    let fp = layer0;
    let folded = layer0;
    let moved = 0;
    for (let l = 0; l < src.config.numLayers; l++) {
      const { ctx, result } = await runAwq(l, l === 0 ? hidden0 : await hiddenDir(fp), { modules: {} });
      const state = await readLayerState(ctx.outDir, l);
      expect(Object.keys(state.quant)).toEqual([]);
      expect(result['search_scheme']).toBe('W4A16_ASYM');
      moved += (result['mappings'] as MappingReport[]).filter((m) => m.ratio > 0 || m.duo_scaling).length;
      const next = tensor('float32', fp.dims, await forward(await src.layer(l), fp));
      const nextFolded = tensor('float32', folded.dims, await forward(state.tensors, folded));
      expect(relChange(next.data, nextFolded.data)).toBeLessThan(1e-4);
      fp = next;
      folded = nextFolded;
    }
    expect(moved).toBeGreaterThan(0);
    expect(relChange(await logits(fp), await logits(folded))).toBeLessThan(1e-4);
  });

  test('with W4A16_ASYM the layer output error is no worse than round-to-nearest, and every Linear is quantized', async () => {
    const { ctx, result } = await runAwq(0, hidden0, { modules: allModules(), duo_scaling: true, n_grid: 20 });
    const rtn = await context({ layer: 0, modules: allModules() }, {});
    await rtnStep.run(rtn);
    const fp = await forward(await src.layer(0), layer0);
    const awqState = await readLayerState(ctx.outDir, 0);
    const awqErr = relChange(fp, await forward(awqState.tensors, layer0));
    const rtnErr = relChange(fp, await forward((await readLayerState(rtn.outDir, 0)).tensors, layer0));
    expect(awqErr).toBeLessThanOrEqual(rtnErr);
    expect(Object.keys(awqState.quant).sort()).toEqual(Object.keys(allModules()).sort());
    for (const q of Object.values(awqState.quant)) {
      expect(q.zeroPoint).toBeDefined();
      expect(q.codes.data.reduce((a, v) => Math.min(a, v), 0)).toBeGreaterThanOrEqual(-8);
      expect(q.codes.data.reduce((a, v) => Math.max(a, v), 0)).toBeLessThanOrEqual(7);
    }
    for (const m of result['mappings'] as MappingReport[]) expect(m.loss).toBeLessThanOrEqual(m.identity_loss);
  });

  test('GGUF Q4_0 / Q4_1 / Q8_0: the search scores the block quantizer; the layer state holds ggml blocks whose values are the weights, output error no worse than rtn', async () => {
    for (const type of ['Q4_0', 'Q4_1', 'Q8_0'] as const) {
      const weights = resolveQuantArgs({ ...GGUF_ARGS[type] });
      const layerSpec = src.arch.layer(src.config, 0);
      const modules = Object.fromEntries(layerSpec.linears.filter((l) => l.inFeatures % 32 === 0).map((l) => [l.local, { weights, input_activations: null }]));
      const { ctx, result } = await runAwq(0, hidden0, { modules, duo_scaling: true, n_grid: 10 });
      const rtn = await context({ layer: 0, modules }, {});
      await rtnStep.run(rtn);
      const fp = await forward(await src.layer(0), layer0);
      const state = await readLayerState(ctx.outDir, 0);
      const awqErr = relChange(fp, await forward(state.tensors, layer0));
      const rtnErr = relChange(fp, await forward((await readLayerState(rtn.outDir, 0)).tensors, layer0));
      expect(awqErr).toBeLessThanOrEqual(rtnErr);
      const searched = (result['mappings'] as MappingReport[]).filter((m) => m.loss !== undefined);
      expect(searched.length).toBeGreaterThan(0);
      for (const m of searched) expect(m.loss).toBeLessThanOrEqual(m.identity_loss);
      expect(Object.keys(state.quant).sort()).toEqual(Object.keys(modules).sort());
      for (const [local, q] of Object.entries(state.quant)) {
        const w = state.tensors[`${local}.weight`]!;
        const [rows, cols] = w.dims as [number, number];
        // the stored blocks decode to the layer's weight: what the gguf output packs is what the forward ran
        const packed = packGgufWeight(type, q.codes!.data as Int8Array, q.gguf!.data as Int16Array, rows, cols);
        expect(Array.from(decodeTensor(GGML_TYPES[type], packed, rows, cols))).toEqual(Array.from(w.data));
      }
    }
  });

  test('duo_scaling "both" reports which family won and the scale range of every mapping', async () => {
    const { result } = await runAwq(0, hidden0, { modules: allModules(), duo_scaling: 'both', n_grid: 8 });
    expect(result['candidates']).toBe(8);
    const reports = result['mappings'] as MappingReport[];
    expect(reports.map((m) => m.smooth)).toEqual(['input_layernorm', 'post_attention_layernorm', 'mlp.up_proj']);
    for (const m of reports) {
      expect(typeof m.duo_scaling).toBe('boolean');
      expect([0, 0.25, 0.5, 0.75]).toContain(m.ratio);
      expect(m.scale.min).toBeLessThanOrEqual(1);
      expect(m.scale.max).toBeGreaterThanOrEqual(1);
    }
  });

  test('needs mean statistics: an absmax capture is refused with missing-statistic', async () => {
    const capture = await context<CaptureParams>({ layer: 0, statistic: 'absmax', modules: ['self_attn.q_proj', 'mlp.gate_proj', 'mlp.down_proj'] }, { hidden: hidden0 });
    await captureStep.run(capture);
    const ctx = await context<AwqParams>({ layer: 0, modules: {}, mappings: mappings(), duo_scaling: false, n_grid: 4 }, { stats: capture.outDir, hidden: hidden0 });
    await expect(awqStep.run(ctx)).rejects.toMatchObject({ reason: 'missing-statistic' });
  });

  test('refuses to smooth a Linear an earlier stage already quantized', async () => {
    const rtn = await context({ layer: 0, modules: { 'mlp.down_proj': { weights: W4A16_ASYM, input_activations: null } } }, {});
    await rtnStep.run(rtn);
    const capture = await context<CaptureParams>({ layer: 0, statistic: 'absmean', modules: ['mlp.down_proj'] }, { hidden: hidden0, state: rtn.outDir });
    await captureStep.run(capture);
    const params: AwqParams = { layer: 0, modules: {}, mappings: [{ smooth: 'mlp.up_proj', balance: ['mlp.down_proj'] }], duo_scaling: false, n_grid: 4 };
    const ctx = await context<AwqParams>(params, { stats: capture.outDir, hidden: hidden0, state: rtn.outDir });
    await expect(awqStep.run(ctx)).rejects.toMatchObject({ reason: 'smoothing-quantized-module' });
  });

  test('a mapping none of whose balance layers is targeted is skipped, the others still quantized', async () => {
    const modules = { 'self_attn.o_proj': { weights: W4A16_ASYM, input_activations: null } };
    const { ctx, result } = await runAwq(0, hidden0, { modules, duo_scaling: false, n_grid: 4 });
    expect((result['mappings'] as { skipped?: string }[]).every((m) => m.skipped !== undefined)).toBe(true);
    expect(Object.keys((await readLayerState(ctx.outDir, 0)).quant)).toEqual(['self_attn.o_proj']);
  });
});


