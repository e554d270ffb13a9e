// The autoround step with GGUF block schemes (Q4_0, Q4_1, Q8_0) on the tiny example model: the learned codes
// and float16 qparams are valid blocks, the bytes the gguf output packs from the layer state decode to the
// very weight the block was trained and is evaluated with, and the block's output error is below ggml's
// round-to-nearest blocks' after a few iterations.

import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Json } from '../../src/cache/key.js';
import { HfSource } from '../../src/model/source.js';
import { Runtime } from '../../src/ort/session.js';
import { presetScheme } from '../../src/quant/scheme.js';
import { BLOCK_FORMATS, decodeTensor } from '../../src/quant/gguf-quantize.js';
import { decodeQParams, packGgufWeight, quantizeGgufRtn } from '../../src/quant/gguf-weight.js';
import { GGML_TYPES } from '../../src/quant/gguf-types.js';
import type { GgufBlockTypeName } from '../../src/quant/gguf-quantize.js';
import type { ModuleQuant } from '../../src/quant/module-quant.js';
import { propagate, readHidden } from '../../src/steps/activations.js';
import { autoroundStep, type AutoRoundParams } from '../../src/steps/autoround.js';
import { readLayerState, type LayerState } from '../../src/steps/layer-state.js';
import { tensor, type Tensor } from '../../src/tensor.js';
import { stepContext, writeTinyModel, type TinyModel } from './tiny-model.js';

const rt = new Runtime({ device: 'cpu' });
let tiny: TinyModel;
let base: Record<string, Tensor<'float32'>> = {};

const gguf = (name: string): ModuleQuant => ({ weights: presetScheme(name, ['Linear']).weights!, input_activations: null });
// down_proj's 688 columns are not whole blocks of 32: it stays unquantized, as with every GGUF method
const TYPES: Record<string, GgufBlockTypeName> = {
  'self_attn.q_proj': 'Q4_0', 'self_attn.k_proj': 'Q4_0', 'self_attn.v_proj': 'Q8_0', 'self_attn.o_proj': 'Q8_0',
  'mlp.gate_proj': 'Q4_1', 'mlp.up_proj': 'Q4_1', 'mlp.down_proj': 'Q4_0',
};
const MODULES: Record<string, ModuleQuant> = Object.fromEntries(Object.entries(TYPES).map(([m, t]) => [m, gguf(`GGUF_${t}`)]));
const TRAINED = Object.keys(TYPES).filter((m) => m !== 'mlp.down_proj');

interface Run {
  result: Record<string, Json>;
  state: LayerState;
  hidden: Tensor<'float32'>;
}
let run: Run;

beforeAll(async () => {
  tiny = await writeTinyModel(rt, 'autoround-gguf', 4, 32);
  base = tiny.layer0;
  const params: AutoRoundParams = {
    layer: 0, modules: MODULES, iters: 12, lr: 1 / 12, minmax_lr: 1 / 12, batch_size: 8, nsamples: null,
    enable_minmax_tuning: true, not_use_best_mse: false, seed: 42,
  };
  const ctx = await stepContext(rt, tiny, params, { hidden: tiny.embedDir, reference: tiny.embedDir }, { id: 'stage1.autoround/layer.0' });
  const result = (await autoroundStep.run(ctx)) as Record<string, Json>;
  run = { result, state: await readLayerState(ctx.outDir, 0), hidden: await readHidden(ctx.outDir) };
});

afterAll(async () => {
  await rt.close();
  await tiny.close();
});

const mse = (a: Float32Array, b: Float32Array): number => a.reduce((s, v, i) => s + (v - b[i]!) ** 2, 0) / a.length;

describe('autoround step with GGUF schemes', () => {
  test('codes are in each block type\'s range, qparams are finite float16, and the packed blocks decode to the stored weight', () => {
    for (const local of TRAINED) {
      const type = TYPES[local]!;
      const q = run.state.quant[local]!;
      const w = run.state.tensors[`${local}.weight`]!;
      const [rows, cols] = w.dims as [number, number];
      const [lo, hi] = BLOCK_FORMATS[type].codeRange;
      expect(q.codes.data.every((c) => c >= lo && c <= hi), local).toBe(true);
      const gq = q.gguf!;
      expect(gq.dims).toEqual([rows, cols / 32, 2]);
      for (const b of decodeQParams(type, gq.data as Int16Array)) {
        expect((b.d & 0x7c00) !== 0x7c00, local).toBe(true); // not Inf or NaN
        if (type !== 'Q4_1') expect(b.m).toBe(0);
      }
      // what the gguf output writes (packGgufWeight of the layer state), decoded as llama.cpp does
      const bytes = packGgufWeight(type, q.codes.data as Int8Array, gq.data as Int16Array, rows, cols);
      expect(bytes.length).toBe(rows * (cols / 32) * GGML_TYPES[type].typeSize);
      const decoded = decodeTensor(GGML_TYPES[type], bytes, rows, cols);
      let differ = 0;
      decoded.forEach((v, i) => (differ += v !== w.data[i] ? 1 : 0));
      expect(differ, local).toBe(0);
      expect(run.result.modules).toHaveProperty([local, 'gguf'], type);
    }
  });

  test('a module no block fits stays unquantized and is reported', () => {
    expect(run.state.quant['mlp.down_proj']).toBeUndefined();
    expect(Array.from(run.state.tensors['mlp.down_proj.weight']!.data)).toEqual(Array.from(base['mlp.down_proj.weight']!.data));
    expect((run.result.modules as Record<string, Record<string, Json>>)['mlp.down_proj']!['skipped']).toMatch(/688 columns are not a multiple of 32/);
  });

  test('the stored weights are the trained ones, and the block error is below ggml round-to-nearest blocks\'', async () => {
    const src = await HfSource.open(tiny.modelDir);
    try {
      const layer = src.arch.layer(src.config, 0);
      const x = await readHidden(tiny.embedDir);
      const target = await propagate(rt, src.config, layer, base, x, new Map());
      const loss = mse(run.hidden.data, target.data);
      // one minibatch holds every window: the kept iterate's training loss is the stored weights' loss
      expect(Math.abs(loss - (run.result.best_loss as number)) / loss).toBeLessThan(1e-3);
      const rtnWeights: Record<string, Tensor<'float32'>> = { ...base };
      for (const local of TRAINED) {
        const w = base[`${local}.weight`]!;
        rtnWeights[`${local}.weight`] = tensor('float32', w.dims, quantizeGgufRtn(TYPES[local]!, w.data, w.dims[0]!, w.dims[1]!).dequantized);
      }
      const rtn = mse((await propagate(rt, src.config, layer, rtnWeights, x, new Map())).data, target.data);
      // the block's output is the objective (a single Linear's output error may rise while the block's falls)
      expect(loss).toBeLessThan(rtn);
    } finally {
      await src.close();
    }
  });
});
