import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { quantizeWeightRtn } from '../../src/algo/fake-quant.js';
import { presetScheme, resolveQuantArgs } from '../../src/quant/scheme.js';
import type { Json } from '../../src/cache/key.js';
import { HfSource } from '../../src/model/source.js';
import { Runtime } from '../../src/ort/session.js';
import { propagate, readHidden, writeHidden } from '../../src/steps/activations.js';
import { autoroundStep, type AutoRoundParams } from '../../src/steps/autoround.js';
import { readLayerState, type LayerState } from '../../src/steps/layer-state.js';
import type { ModuleQuant } from '../../src/quant/module-quant.js';
import { tensor, type Tensor } from '../../src/tensor.js';
import { stepContext, writeTinyModel, type TinyModel } from './tiny-model.js';

const rt = new Runtime({ device: 'cpu' });
let tiny: TinyModel;
const [WINDOWS, SEQ] = [4, 32];
let embedDir = '';
let base: Record<string, Tensor<'float32'>> = {};

const W4A16 = presetScheme('W4A16', ['Linear']).weights!;
const W4A16_ASYM = presetScheme('W4A16_ASYM', ['Linear']).weights!;
// attention in W4A16 (sym, group 128), the MLP asymmetric: 688 MLP columns leave a partial last group
const MODULES: Record<string, ModuleQuant> = Object.fromEntries(
  ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'].map((m) => [
    m,
    { weights: m.startsWith('mlp') ? W4A16_ASYM : W4A16, input_activations: null },
  ]),
);

beforeAll(async () => {
  tiny = await writeTinyModel(rt, 'autoround', WINDOWS, SEQ);
  embedDir = tiny.embedDir;
  base = tiny.layer0;
});

afterAll(async () => {
  await rt.close();
  await tiny.close();
});

interface Run {
  result: Record<string, Json>;
  state: LayerState;
  hidden: Tensor<'float32'>;
  progress: string[];
}

async function runStep(overrides: Partial<AutoRoundParams> = {}, referenceDir = embedDir): Promise<Run> {
  const progress: string[] = [];
  const params: AutoRoundParams = {
    layer: 0, modules: MODULES, iters: 20, lr: 1 / 20, minmax_lr: 1 / 20, batch_size: 8, nsamples: null,
    enable_minmax_tuning: true, not_use_best_mse: false, seed: 42, ...overrides,
  };
  const ctx = await stepContext(rt, tiny, params, { hidden: embedDir, reference: referenceDir }, {
    id: 'stage1.autoround/layer.0',
    progress: (_done, _total, message) => progress.push(message ?? ''),
  });
  const { outDir } = ctx;
  const result = (await autoroundStep.run(ctx)) as Record<string, Json>;
  return { result, state: await readLayerState(outDir, 0), hidden: await readHidden(outDir), progress };
}

/** positions where two arrays differ (toEqual walks large typed arrays slowly); a length mismatch counts as all */
const differ = (a: ArrayLike<number> | undefined, b: ArrayLike<number> | undefined): number => {
  if (!a || !b || a.length !== b.length) return Math.max(a?.length ?? 0, b?.length ?? 0, 1);
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
};
const mse = (a: Float32Array, b: Float32Array): number => a.reduce((s, v, i) => s + (v - b[i]!) ** 2, 0) / a.length;

let tuned: Promise<Run> | undefined;
const tunedRun = (): Promise<Run> => (tuned ??= runStep());

describe('autoround step', () => {
  test('with 0 iterations every module gets exactly the round-to-nearest codes, scales and zero points', async () => {
    const { state, result } = await runStep({ iters: 0 });
    expect(result.loss_iter0).toBeNull();
    for (const [local, module] of Object.entries(MODULES)) {
      const w = base[`${local}.weight`]!;
      const rtn = await quantizeWeightRtn(w.data, w.dims[0]!, w.dims[1]!, module.weights);
      const q = state.quant[local]!;
      expect(differ(q.codes.data, rtn.codes), local).toBe(0);
      expect(differ(q.scale.data, rtn.scale), local).toBe(0);
      if (!module.weights.symmetric) expect(differ(q.zeroPoint?.data, rtn.zeroPoint), local).toBe(0);
      expect(differ(state.tensors[`${local}.weight`]!.data, rtn.dequantized), local).toBe(0);
    }
  });

  test('the block loss decreases from its iteration-0 value on the tiny example model', async () => {
    const { result, progress } = await tunedRun();
    const curve = result.loss_curve as [number, number][];
    expect(curve).toHaveLength(20);
    expect(result.loss_iter0).toBe(curve[0]![1]);
    expect(result.best_loss as number).toBeLessThan(result.loss_iter0 as number);
    expect(result.kept_iter).toBe(result.best_iter);
    expect(progress).toHaveLength(20);
    expect(progress[0]).toMatch(/^loss \d\.\de[-+]\d+ best \d\.\de[-+]\d+$/);
    expect(result.ms_per_iter as number).toBeGreaterThan(0);
    expect(result.ort_share as number).toBeGreaterThan(0);
    expect(result.ort_share as number).toBeLessThanOrEqual(1);
  });

  test('the next block inputs are the kept quantized block run over the quantized-path inputs', async () => {
    const { result, hidden, state } = await tunedRun();
    const src = await HfSource.open(tiny.modelDir);
    try {
      const linears = src.arch.layer(src.config, 0);
      const x = await readHidden(embedDir);
      const target = await propagate(rt, src.config, linears, base, x, new Map());
      const again = await propagate(rt, src.config, linears, state.tensors, x, new Map());
      expect(differ(again.data, hidden.data)).toBe(0);
      // every window is in the one minibatch, so the kept iterate's loss is the full loss
      const loss = mse(hidden.data, target.data);
      expect(Math.abs(loss - (result.best_loss as number)) / loss).toBeLessThan(1e-3);
      const rtnWeights: Record<string, Tensor<'float32'>> = { ...base };
      for (const [local, m] of Object.entries(MODULES)) {
        const w = base[`${local}.weight`]!;
        rtnWeights[`${local}.weight`] = tensor('float32', w.dims, (await quantizeWeightRtn(w.data, w.dims[0]!, w.dims[1]!, m.weights)).dequantized);
      }
      const rtn = await propagate(rt, src.config, linears, rtnWeights, x, new Map());
      expect(loss).toBeLessThan(mse(rtn.data, target.data));
    } finally {
      await src.close();
    }
  });

  test('stored codes and qparams reproduce the stored weight bit for bit', async () => {
    const { state } = await tunedRun();
    let moved = 0;
    for (const [local, module] of Object.entries(MODULES)) {
      const q = state.quant[local]!;
      const w = state.tensors[`${local}.weight`]!;
      const [rows, cols] = w.dims as [number, number];
      const groups = q.scale.dims[1]!;
      expect(groups).toBe(Math.ceil(cols / 128));
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) {
          const j = r * groups + Math.floor(c / 128);
          const zp = module.weights.symmetric ? 0 : q.zeroPoint!.data[j]!;
          const deq = Math.fround((q.codes.data[r * cols + c]! - zp) * q.scale.data[j]!);
          if (deq !== w.data[r * cols + c]) throw new Error(`${local}[${r}, ${c}]: ${w.data[r * cols + c]} stored, ${deq} from codes`);
        }
      }
      const rtn = await quantizeWeightRtn(base[`${local}.weight`]!.data, rows, cols, module.weights);
      moved += q.codes.data.filter((v, i) => v !== rtn.codes[i]).length;
    }
    expect(moved).toBeGreaterThan(0);
  });

  test('per-module output errors against rtn are reported', async () => {
    const { result } = await tunedRun();
    const modules = result.modules as Record<string, Record<string, number>>;
    expect(Object.keys(modules).sort()).toEqual(Object.keys(MODULES).sort());
    for (const m of Object.values(modules)) {
      for (const k of ['output_error', 'rtn_output_error', 'weight_error', 'rtn_weight_error']) {
        expect(m[k], k).toBeGreaterThan(0);
        expect(m[k], k).toBeLessThan(1);
      }
    }
  });

  test('the same seed gives the same result; another seed samples other minibatches', async () => {
    const params = { iters: 6, batch_size: 2 };
    const [a, b, c] = [await runStep(params), await runStep(params), await runStep({ ...params, seed: 7 })];
    expect(b.result.loss_curve).toEqual(a.result.loss_curve);
    for (const local of Object.keys(MODULES)) expect(differ(b.state.quant[local]!.codes.data, a.state.quant[local]!.codes.data), local).toBe(0);
    expect(differ(b.hidden.data, a.hidden.data)).toBe(0);
    expect(c.result.loss_curve).not.toEqual(a.result.loss_curve);
  });

  test('not_use_best_mse keeps the iterate of the last iteration', async () => {
    const { result } = await runStep({ iters: 5, not_use_best_mse: true, enable_minmax_tuning: false });
    expect(result.kept_iter).toBe(4);
    expect((result.loss_curve as [number, number][]).length).toBe(5);
  });

  test('a block with no targeted module is passed through unquantized', async () => {
    const { result, state, hidden } = await runStep({ modules: {} });
    expect(result.loss_iter0).toBeNull();
    expect(state.quant).toEqual({});
    const src = await HfSource.open(tiny.modelDir);
    try {
      const fp = await propagate(rt, src.config, src.arch.layer(src.config, 0), base, await readHidden(embedDir), new Map());
      expect(differ(hidden.data, fp.data)).toBe(0);
    } finally {
      await src.close();
    }
  });

  test('inputs of different window lengths are refused', async () => {
    const other = mkdtempSync(join(tiny.root, 'ref-'));
    await writeHidden(other, tensor('float32', [WINDOWS, SEQ / 2, 256], new Float32Array(WINDOWS * (SEQ / 2) * 256)));
    await expect(runStep({ iters: 1 }, other)).rejects.toMatchObject({ reason: 'autoround-input-mismatch' });
  });

  test('actorder group is refused with the allowed values', async () => {
    const grouped = resolveQuantArgs({ num_bits: 4, symmetric: true, group_size: 128, actorder: 'group' });
    const modules = { 'self_attn.q_proj': { weights: grouped, input_activations: null } };
    await expect(runStep({ iters: 1, modules })).rejects.toMatchObject({ reason: 'autoround-unsupported-actorder', message: expect.stringMatching(/expected null or "static"/) });
  });
});
