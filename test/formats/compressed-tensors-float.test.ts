// The compressed-tensors layout of the FP8, NVFP4, MXFP4 and W4A8 schemes, checked against the format as
// compressed-tensors describes it (tensor names, dtypes, shapes, bytes; config_groups and format), not by
// reading it back with our own reader.

import { describe, expect, test } from 'vitest';
import { quantizeWeightRtn } from '../../src/algo/fake-quant.js';
import { compressInputScales, compressModule, quantizationConfig } from '../../src/formats/compressed-tensors.js';
import { packFp4, unpackFp4 } from '../../src/formats/fp4-pack.js';
import type { QuantizedModule } from '../../src/quant/module-quant.js';
import { presetScheme } from '../../src/quant/scheme.js';
import { tensor, type Tensor } from '../../src/tensor.js';

async function module(scheme: string, w: number[], rows: number, cols: number): Promise<QuantizedModule> {
  const s = presetScheme(scheme, ['Linear']);
  const q = await quantizeWeightRtn(Float32Array.from(w), rows, cols, s.weights!);
  return {
    weights: s.weights!,
    input_activations: s.input_activations,
    codes: tensor('int8', [rows, cols], q.codes),
    scale: tensor('float32', q.scaleDims, q.scale),
    ...(q.globalScale === undefined ? {} : { globalScale: tensor('float32', [1], Float32Array.of(q.globalScale)) }),
  };
}

const layout = (ts: [string, Tensor][]) => ts.map(([n, t]) => [n, t.dtype, t.dims]);
const bytes = (t: Tensor): number[] => Array.from(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
const ramp = (n: number, scale = 1): number[] => Array.from({ length: n }, (_, i) => (((i * 37) % 23) - 11) * scale);

describe('fp4 packing', () => {
  test('two e2m1 codes per byte, element 0 in the low nibble', () => {
    // values [1, −0.5, 6, 0] → codes [2, 9, 7, 0]
    expect(Array.from(packFp4(Int8Array.of(2, 9, 7, 0), 1, 4))).toEqual([0x92, 0x07]);
    expect(Array.from(unpackFp4(Uint8Array.of(0x92, 0x07), 1, 4))).toEqual([2, 9, 7, 0]);
    expect(() => packFp4(new Int8Array(3), 1, 3)).toThrow(/even number of columns, found 3/);
  });
});

describe('compressed-tensors layout of the new schemes', () => {
  test('FP8_DYNAMIC: float-quantized, float8_e4m3fn weight, per-channel scale in the model dtype, nothing for the inputs', async () => {
    const q = await module('FP8_DYNAMIC', [448, -224, 1, 0.001, ...ramp(4)], 2, 4);
    const out = compressModule('m', q, 'bfloat16');
    expect(layout(out)).toEqual([['m.weight', 'float8e4m3fn', [2, 4]], ['m.weight_scale', 'bfloat16', [2, 1]]]);
    expect(bytes(out[0]![1]).slice(0, 4)).toEqual([0x7e, 0xf6, 0x38, 0x01]);
    const config = quantizationConfig(new Map([['model.layers.0.mlp.up_proj', q]]), []);
    expect(config['format']).toBe('float-quantized');
    expect(config['version']).toBe('0.12.2');
  });

  test('FP8: one weight scale of shape [1] and the calibrated input_scale', async () => {
    const q = await module('FP8', ramp(16), 4, 4);
    const tensors = { 'mlp.up_proj.input_scale': tensor('float32', [1], Float32Array.of(0.5)) };
    const out = [...compressModule('m', q, 'float32'), ...compressInputScales('m', q, tensors, 'mlp.up_proj', 'bfloat16')];
    expect(layout(out)).toEqual([['m.weight', 'float8e4m3fn', [4, 4]], ['m.weight_scale', 'float32', [1]], ['m.input_scale', 'bfloat16', [1]]]);
  });

  test('FP8_BLOCK: one scale per 128 × 128 block, partial blocks included', async () => {
    const q = await module('FP8_BLOCK', ramp(200 * 130, 0.01), 200, 130);
    expect(layout(compressModule('m', q, 'float32'))).toEqual([['m.weight', 'float8e4m3fn', [200, 130]], ['m.weight_scale', 'float32', [2, 2]]]);
  });

  test('NVFP4: nvfp4-pack-quantized, packed e2m1, fp8 group scales, fp32 global scales for weight and input', async () => {
    const w = new Array<number>(64).fill(0);
    [w[0], w[1], w[2], w[3]] = [12, 5, 7, -10];
    const q = await module('NVFP4', w, 1, 64);
    const tensors = { 'self_attn.q_proj.input_global_scale': tensor('float32', [1], Float32Array.of(9.6)) };
    const out = [...compressModule('m', q, 'bfloat16'), ...compressInputScales('m', q, tensors, 'self_attn.q_proj', 'bfloat16')];
    expect(layout(out)).toEqual([
      ['m.weight_packed', 'uint8', [1, 32]],
      ['m.weight_scale', 'float8e4m3fn', [1, 4]],
      ['m.weight_global_scale', 'float32', [1]],
      ['m.input_global_scale', 'float32', [1]],
    ]);
    // codes [7, 4, 6, 14] (hand-computed in test/quant/qparams-float.test.ts) → bytes 0x47, 0xE6
    expect(bytes(out[0]![1]).slice(0, 2)).toEqual([0x47, 0xe6]);
    // group scales 448 (0x7E) and three empty groups at 0.125 = 2^-3 (exponent 4: 0x20); global scale 224
    expect(bytes(out[1]![1])).toEqual([0x7e, 0x20, 0x20, 0x20]);
    expect(Array.from(out[2]![1].data as Float32Array)).toEqual([224]);
    const config = quantizationConfig(new Map([['model.layers.0.mlp.up_proj', q]]), ['lm_head']) as { config_groups: Record<string, Record<string, Record<string, unknown>>>; format: string };
    expect(config.format).toBe('nvfp4-pack-quantized');
    expect(config.config_groups.group_0!.input_activations).toMatchObject({ num_bits: 4, type: 'float', strategy: 'tensor_group', group_size: 16, dynamic: 'local' });
    expect(config.config_groups.group_0!.weights).not.toHaveProperty('scale_dtype');
  });

  test('MXFP4: mxfp4-pack-quantized with e8m0 scale bytes, written as compressed-tensors 0.14 writes it', async () => {
    const w = new Array<number>(64).fill(0);
    [w[0], w[32]] = [6, 7];
    const q = await module('MXFP4', w, 1, 64);
    const out = compressModule('m', q, 'bfloat16');
    expect(layout(out)).toEqual([['m.weight_packed', 'uint8', [1, 32]], ['m.weight_scale', 'uint8', [1, 2]]]);
    expect(bytes(out[1]![1])).toEqual([127, 128]);
    const config = quantizationConfig(new Map([['model.layers.0.mlp.up_proj', q]]), []) as { config_groups: Record<string, Record<string, Record<string, unknown>>>; version: string; format: string };
    expect([config.format, config.version]).toEqual(['mxfp4-pack-quantized', '0.14.0']);
    expect(config.config_groups.group_0!.weights).toMatchObject({ scale_dtype: 'torch.uint8', zp_dtype: null, group_size: 32, strategy: 'group' });
  });

  test('W4A8: int-quantized, int4 codes unpacked in int8, group scales', async () => {
    const q = await module('W4A8', ramp(4 * 256), 4, 256);
    const out = compressModule('m', q, 'float32');
    expect(layout(out)).toEqual([['m.weight', 'int8', [4, 256]], ['m.weight_scale', 'float32', [4, 2]]]);
    const codes = Array.from(out[0]![1].data as Int8Array);
    expect(Math.min(...codes)).toBeGreaterThanOrEqual(-8);
    expect(Math.max(...codes)).toBe(7);
    expect(quantizationConfig(new Map([['m', q]]), [])['format']).toBe('int-quantized');
  });
});
