import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { quantizeWeightRtn } from '../../src/algo/fake-quant.js';
import { dequantizeWeight } from '../../src/quant/qparams.js';
import { presetScheme } from '../../src/quant/scheme.js';
import type { Json } from '../../src/cache/key.js';
import { HfSource } from '../../src/model/source.js';
import { Runtime } from '../../src/ort/session.js';
import { propagate, readHidden } from '../../src/steps/activations.js';
import { gptqStep, type GptqParams } from '../../src/steps/gptq.js';
import { actQuantOf, readLayerState, readQuantInfo, type LayerState } from '../../src/steps/layer-state.js';
import type { ModuleQuant } from '../../src/quant/module-quant.js';
import type { Tensor } from '../../src/tensor.js';
import { stepContext, writeTinyModel, type TinyModel } from './tiny-model.js';

const rt = new Runtime({ device: 'cpu' });
let tiny: TinyModel;
// 512 tokens: attn_in (256 features) is well determined, down_in (688 features) is rank-deficient
const [WINDOWS, SEQ] = [8, 64];
let embedDir = '';
let base: Record<string, Tensor<'float32'>> = {};

const LOCALS = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];
const modulesOf = (scheme: string): Record<string, ModuleQuant> => {
  const s = presetScheme(scheme, ['Linear']);
  return Object.fromEntries(LOCALS.map((m) => [m, { weights: s.weights!, input_activations: s.input_activations }]));
};
const W4A16 = modulesOf('W4A16');
const W8A8 = modulesOf('W8A8');

beforeAll(async () => {
  tiny = await writeTinyModel(rt, 'gptq', WINDOWS, SEQ);
  embedDir = tiny.embedDir;
  base = tiny.layer0;
});

afterAll(async () => {
  await rt.close();
  await tiny.close();
});

interface Run {
  outDir: string;
  result: Record<string, Json>;
  state: LayerState;
  hidden: Tensor<'float32'>;
  progress: [number, number, string][];
  warnings: string[];
}

async function runStep(params: Partial<GptqParams>, stateDir?: string): Promise<Run> {
  const progress: [number, number, string][] = [];
  const warnings: string[] = [];
  const ctx = await stepContext<GptqParams>(
    rt,
    tiny,
    { layer: 0, modules: W4A16, block_size: 128, dampening_frac: 0.01, actorder: 'static', offload_hessians: false, ...params },
    { hidden: embedDir, state: stateDir },
    { id: 'stage1.gptq/layer.0', progress: (done, total, message) => progress.push([done, total, message ?? '']), warn: (m) => warnings.push(m) },
  );
  const { outDir } = ctx;
  const result = (await gptqStep.run(ctx)) as Record<string, Json>;
  return { outDir, result, state: await readLayerState(outDir, 0), hidden: await readHidden(outDir), progress, warnings };
}

type ModuleMetrics = Record<string, number | boolean | null | string | number[]>;

let w4: Promise<Run> | undefined;
const w4Run = (): Promise<Run> => (w4 ??= runStep({}));

describe('gptq step', () => {
  test('writes the layer state and the next inputs, finite, the quantized layer run over the inputs', async () => {
    const { outDir, state, hidden } = await w4Run();
    for (const f of ['layer.safetensors', 'quant.json', 'hidden.safetensors']) expect(existsSync(join(outDir, f)), f).toBe(true);
    expect(hidden.dims).toEqual([WINDOWS, SEQ, 256]);
    expect(hidden.data.every(Number.isFinite)).toBe(true);
    const src = await HfSource.open(tiny.modelDir);
    try {
      const again = await propagate(rt, src.config, src.arch.layer(src.config, 0), state.tensors, await readHidden(embedDir), actQuantOf(state.quant));
      expect(again.data).toEqual(hidden.data);
    } finally {
      await src.close();
    }
  });

  test('beats round-to-nearest on the output error of every Linear', async () => {
    const { result } = await w4Run();
    const modules = result.modules as Record<string, ModuleMetrics>;
    expect(Object.keys(modules).sort()).toEqual([...LOCALS].sort());
    for (const [local, m] of Object.entries(modules)) {
      expect(m.output_error as number, local).toBeGreaterThan(0);
      expect(m.output_error as number, local).toBeLessThan(m.rtn_output_error as number);
      for (const k of ['weight_error', 'rtn_weight_error']) expect(m[k] as number, `${local} ${k}`).toBeGreaterThan(0);
      expect(m.dampening_frac, local).toBe(0.01);
      expect(m.actorder, local).toBe('static');
    }
  });

  test('stores codes and scales that reproduce the dequantized weights, with partial last groups', async () => {
    const { state } = await w4Run();
    const info = readQuantInfo((await w4Run()).outDir);
    for (const local of LOCALS) {
      const q = state.quant[local]!;
      const w = state.tensors[`${local}.weight`]!;
      const [rows, cols] = w.dims as [number, number];
      expect(q.scale.dims, local).toEqual([rows, Math.ceil(cols / 128)]);
      expect(q.gIdx, local).toBeUndefined();
      expect(info[local]!.weights.actorder).toBe('static');
      const deq = dequantizeWeight(q.codes.data, rows, cols, { scale: q.scale.data, zeroPoint: new Int8Array(q.scale.data.length) }, q.weights);
      expect(deq, local).toEqual(w.data);
      const rtn = await quantizeWeightRtn(base[`${local}.weight`]!.data, rows, cols, q.weights);
      // qparams come from the observer up front, as llm-compressor computes them
      expect(q.scale.data, local).toEqual(rtn.scale);
      expect(q.codes.data, local).not.toEqual(rtn.codes);
    }
  });

  test('reports timing per phase and progress that reaches its total', async () => {
    const { result, progress } = await w4Run();
    const t = result.timing_ms as Record<string, number>;
    for (const k of ['capture', 'hessian', 'quantize', 'metrics', 'propagate']) expect(t[k], k).toBeGreaterThan(0);
    const last = progress.at(-1)!;
    expect(last[0]).toBe(last[1]);
    expect(progress.map((p) => p[2])).toContain('quantized mlp.down_proj');
    expect(result.hessian_passes).toBe(1);
    expect(result.tokens).toBe(WINDOWS * SEQ);
  });

  test('Simple PTQ (W8A8, dampening 0) escalates dampening on the singular down_proj Hessian, warns and stays finite', async () => {
    const { result, state, hidden, warnings } = await runStep({ modules: W8A8, dampening_frac: 0 });
    const modules = result.modules as Record<string, ModuleMetrics>;
    const down = modules['mlp.down_proj']!;
    expect(down.dampening_frac as number).toBeGreaterThan(0);
    expect((down.dampening_tried as number[])[0]).toBe(0);
    expect(down.rtn_fallback).toBe(false);
    const warning = warnings.find((w) => w.includes('model.layers.0.mlp.down_proj'));
    expect(warning).toMatch(/singular with dampening_frac 0; used dampening_frac 0\.\d+/);
    expect(warning).toContain(String(down.dampening_frac));
    expect(result.warnings).toEqual(warnings);
    expect(hidden.data.every(Number.isFinite)).toBe(true);
    for (const local of LOCALS) {
      expect(state.tensors[`${local}.weight`]!.data.every(Number.isFinite), local).toBe(true);
      expect(state.quant[local]!.input_activations?.strategy, local).toBe('token');
      // static act order solves channel-wise weights in a new order but records nothing
      expect(state.quant[local]!.weights.actorder, local).toBeNull();
      expect(modules[local]!.actorder, local).toBe('static');
      expect(modules[local]!.output_error as number, local).toBeLessThan(modules[local]!.rtn_output_error as number);
    }
  });

  test('offloaded Hessians give the same result as held ones, in one capture pass per site', async () => {
    const held = await w4Run();
    const off = await runStep({ offload_hessians: true });
    expect(off.result.hessian_passes).toBe(4);
    for (const local of LOCALS) expect(off.state.quant[local]!.codes.data, local).toEqual(held.state.quant[local]!.codes.data);
    expect(off.hidden.data).toEqual(held.hidden.data);
    expect(off.progress.at(-1)![0]).toBe(off.progress.at(-1)![1]);
  });

  test('offloaded Hessians of a W8A8 stage are captured without the activation quantization of its own Linears', async () => {
    const held = await runStep({ modules: W8A8 });
    const off = await runStep({ modules: W8A8, offload_hessians: true });
    for (const local of LOCALS) expect(off.state.quant[local]!.codes.data, local).toEqual(held.state.quant[local]!.codes.data);
  });

  test('actorder group stores g_idx for each grouped Linear', async () => {
    const { state, outDir } = await runStep({ actorder: 'group', modules: { 'mlp.down_proj': W4A16['mlp.down_proj']! } });
    const q = state.quant['mlp.down_proj']!;
    expect(q.gIdx?.dims).toEqual([688]);
    expect(readQuantInfo(outDir)['mlp.down_proj']!.weights.actorder).toBe('group');
    expect(Object.keys(state.quant)).toEqual(['mlp.down_proj']);
    const w = state.tensors['mlp.down_proj.weight']!;
    const deq = dequantizeWeight(q.codes.data, 256, 688, { scale: q.scale.data, zeroPoint: new Int8Array(q.scale.data.length) }, q.weights, q.gIdx!.data);
    expect(deq).toEqual(w.data);
  });

  test('a second stage builds on the state of the first, capturing with its W8A8 activations, offloaded or not', async () => {
    const attention = Object.fromEntries(LOCALS.slice(0, 3).map((m) => [m, W8A8[m]!]));
    const rest = Object.fromEntries(LOCALS.slice(3).map((m) => [m, W4A16[m]!]));
    const first = await runStep({ modules: attention, dampening_frac: 0.01 });
    const held = await runStep({ modules: rest }, first.outDir);
    const off = await runStep({ modules: rest, offload_hessians: true }, first.outDir);
    expect(Object.keys(held.state.quant).sort()).toEqual([...LOCALS].sort());
    for (const m of LOCALS.slice(0, 3)) expect(held.state.quant[m]!.codes.data, m).toEqual(first.state.quant[m]!.codes.data);
    for (const m of LOCALS.slice(3)) expect(off.state.quant[m]!.codes.data, m).toEqual(held.state.quant[m]!.codes.data);
    expect(off.hidden.data).toEqual(held.hidden.data);
    // o_proj calibrates on attention outputs computed with the first stage's W8A8 q/k/v
    const fresh = await runStep({ modules: rest });
    expect(held.state.quant['self_attn.o_proj']!.codes.data).not.toEqual(fresh.state.quant['self_attn.o_proj']!.codes.data);
  });

  test('refuses a module that is not a Linear of the layer', async () => {
    await expect(runStep({ modules: { 'mlp.fc9': W4A16['mlp.up_proj']! } })).rejects.toThrow(/mlp\.fc9 are not Linears of the layer; expected some of: self_attn\.q_proj/);
  });
});
