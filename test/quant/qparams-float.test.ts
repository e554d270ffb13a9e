// qparams and codes of the float schemes against values worked out by hand from compressed-tensors'
// arithmetic (calculate_qparams, generate_gparam, _quantize with float types): FP8, NVFP4, MXFP4.

import { describe, expect, test } from 'vitest';
import { computeQParams, dequantizeWeight, effectiveScales, nvfp4GlobalScale, qparamShape, quantizeWeight, tensorMinMax, weightMinMax } from '../../src/quant/qparams.js';
import { presetScheme, type QuantArgs } from '../../src/quant/scheme.js';

const f = Math.fround;
const args = (name: string): QuantArgs => presetScheme(name, ['Linear']).weights!;
const bytes = (codes: Int8Array): number[] => Array.from(codes, (c) => c & 0xff);

function quantize(w: number[], rows: number, cols: number, a: QuantArgs) {
  const x = Float32Array.from(w);
  const { min, max } = weightMinMax(x, rows, cols, a);
  const t = tensorMinMax(x);
  const qp = computeQParams(min, max, a, a.strategy === 'tensor_group' ? nvfp4GlobalScale(t.min, t.max) : undefined);
  const codes = quantizeWeight(x, rows, cols, qp, a);
  return { qp, codes, dq: dequantizeWeight(codes, rows, cols, qp, a) };
}

describe('FP8 weights (e4m3fn codes, scale = max|w| / 448)', () => {
  test('per channel: saturated, negative, normal, subnormal and all-zero rows', () => {
    const a = args('FP8_DYNAMIC');
    const { qp, codes, dq } = quantize([448, -224, 1, 0.001, 0, 0, 0, 0], 2, 4, a);
    expect(Array.from(qp.scale)).toEqual([1, 2 ** -23]);
    // 448 → 0x7E, −224 = −1.75·2^7 → 0xF6, 1 → 0x38, 0.001 → 0.512 · 2^-9 → subnormal 0x01
    expect(bytes(codes)).toEqual([0x7e, 0xf6, 0x38, 0x01, 0, 0, 0, 0]);
    expect(Array.from(dq)).toEqual([448, -224, 1, 2 ** -9, 0, 0, 0, 0]);
  });

  test('FP8 is one scale for the whole weight; FP8_BLOCK one per 128 × 128 block, partial blocks included', () => {
    expect(qparamShape(300, 200, args('FP8'))).toEqual([1, 1]);
    expect(qparamShape(300, 200, args('FP8_BLOCK'))).toEqual([3, 2]);
    const block = { ...args('FP8_BLOCK'), block_structure: [2, 2] };
    const { qp, dq } = quantize([1, 2, 4, 3, 4, 8, 0, 0, 896], 3, 3, block);
    expect(Array.from(qp.scale)).toEqual([f(4 / 448), f(8 / 448), f(2 ** -23), 2]);
    expect(dq[8]).toBe(896);
    expect(dq[5]).toBe(8);
  });
});

describe('NVFP4 weights (global scale 2688 / max|W|, fp8 group scales of 16)', () => {
  // one row, four groups of 16: max 12 (the tensor max), max 1, all zeros, max 0.0003
  const row = new Array<number>(64).fill(0);
  row[0] = 12; row[1] = 5; row[2] = 7; row[3] = -10;
  row[16] = 1; row[17] = -1; row[18] = 0.5; row[19] = 0.08; row[20] = -0.02;
  row[48] = 0.0003;

  test('global scale, fp8 group scales (rounded, 0 → 0.125, subnormal) and what x is divided by', () => {
    const { qp } = quantize(row, 1, 64, args('NVFP4'));
    expect(qp.globalScale).toBe(224); // 448 · 6 / 12
    // 224 · 12/6 = 448; 224 · 1/6 = 37.33 → fp8 36; 0 → 0.125; 224 · 0.00005 = 0.0112 → 6 · 2^-9 (subnormal)
    expect(Array.from(qp.scale)).toEqual([448, 36, 0.125, 6 * 2 ** -9]);
    expect(Array.from(effectiveScales(qp))).toEqual([2, f(36 / 224), f(0.125 / 224), f(6 * 2 ** -9 / 224)]);
  });

  test('codes: ties to even, saturation at 6 under a rounded-down scale, −0 for small negatives', () => {
    const { codes, dq } = quantize(row, 1, 64, args('NVFP4'));
    // group 0 (÷2): 12 → 6 (7), 5 → 2.5 → 2 (4), 7 → 3.5 → 4 (6), −10 → −5 → −4 (14)
    expect(Array.from(codes.subarray(0, 4))).toEqual([7, 4, 6, 14]);
    // group 1 (÷36/224): 1 → 6.22 → 6 (7), −1 → 15, 0.5 → 3.11 → 3 (5), 0.08 → 0.5 (1), −0.02 → −0 (8)
    expect(Array.from(codes.subarray(16, 21))).toEqual([7, 15, 5, 1, 8]);
    expect(dq[16]).toBe(f(6 * f(36 / 224)));
    expect(Array.from(codes.subarray(32, 48))).toEqual(new Array(16).fill(0));
    expect(codes[48]).toBe(7); // 0.0003 / (0.01171875 / 224) = 5.73 → 6
  });

  test('an all-zero weight gets global scale 1 and scales 0.125', () => {
    expect(nvfp4GlobalScale(0, 0)).toBe(1);
    const { qp, codes } = quantize(new Array<number>(16).fill(0), 1, 16, args('NVFP4A16'));
    expect([qp.globalScale, qp.scale[0]]).toEqual([1, 0.125]);
    expect(Array.from(codes)).toEqual(new Array(16).fill(0));
  });
});

describe('MXFP4 weights (power-of-two scales of 32)', () => {
  test('scale 2^(b − 127) from max|x|; an all-zero group gets 2^-127', () => {
    const row = new Array<number>(96).fill(0);
    row[0] = 6; row[1] = -1.3; row[2] = 0.26;
    row[32] = 7; row[33] = 2.9;
    const { qp, codes, dq } = quantize(row, 1, 96, args('MXFP4'));
    expect(Array.from(qp.scale)).toEqual([1, 2, 2 ** -127]);
    // ÷1: 6 → 7, −1.3 → −1.5 (11), 0.26 → 0.5 (1); ÷2: 7 → 3.5 → 4 (6), 2.9 → 1.45 → 1.5 (3)
    expect([codes[0], codes[1], codes[2], codes[32], codes[33]]).toEqual([7, 11, 1, 6, 3]);
    expect([dq[32], dq[33], dq[64]]).toEqual([8, 3, 0]);
  });
});
