import { describe, expect, test } from 'vitest';
import { fakeQuantizeActivationsPerToken, quantizeWeightRtn } from '../../src/algo/fake-quant.js';
import { presetScheme } from '../../src/quant/scheme.js';

describe('fakeQuantizeActivationsPerToken', () => {
  test('each row gets scale max|x| / 127.5; ties round to even and the top clamps to 127', () => {
    // row 0: max|x| = 127.5 → scale 1; row 1: max|x| = 255 → scale 2
    const x = Float32Array.of(127.5, -127.5, 0.5, 1.5, 2.5, /**/ 3, -255, 5, 7, 1);
    const y = fakeQuantizeActivationsPerToken(x, 2, 5);
    expect(Array.from(y.subarray(0, 5))).toEqual([127, -128, 0, 2, 2]);
    // row 1 in units of 2: 1.5 → 2, −127.5 → −128, 2.5 → 2, 3.5 → 4, 0.5 → 0
    expect(Array.from(y.subarray(5))).toEqual([4, -256, 4, 8, 0]);
  });

  test('a zero row stays zero (scale clamps to fp32 eps)', () => {
    expect(Array.from(fakeQuantizeActivationsPerToken(new Float32Array(3), 1, 3))).toEqual([0, 0, 0]);
  });

  test('4-bit activations use max|x| / 7.5', () => {
    expect(Array.from(fakeQuantizeActivationsPerToken(Float32Array.of(7.5, 2.5, -3.5), 1, 3, 4))).toEqual([7, 2, -4]);
  });
});

describe('quantizeWeightRtn', () => {
  test('W4A16 quantizes each group of 128 from its own min/max', async () => {
    const cols = 172;
    const w = Float32Array.from({ length: 2 * cols }, (_, i) => ((i % cols) < 128 ? 1 : 10) * Math.sin(i));
    const args = presetScheme('W4A16', ['Linear']).weights!;
    const q = await quantizeWeightRtn(w, 2, cols, args);
    expect(q.scaleDims).toEqual([2, 2]);
    expect(q.codes.length).toBe(2 * cols);
    expect(Math.min(...q.codes)).toBeGreaterThanOrEqual(-8);
    expect(Math.max(...q.codes)).toBeLessThanOrEqual(7);
    // the partial second group (44 columns) has ~10x the range of the first
    expect((q.scale[1] as number) / (q.scale[0] as number)).toBeGreaterThan(5);
    for (let i = 0; i < w.length; i++) {
      const s = q.scale[Math.floor(i / cols) * 2 + ((i % cols) < 128 ? 0 : 1)] as number;
      expect(Math.abs((q.dequantized[i] as number) - (w[i] as number))).toBeLessThanOrEqual(s / 2 + 1e-6);
    }
  });

  test('W4A16_ASYM stores zero points; W8A8 weights are per channel', async () => {
    const w = Float32Array.from({ length: 4 * 64 }, (_, i) => 0.5 + Math.cos(i) * 0.1);
    const asym = await quantizeWeightRtn(w, 4, 64, presetScheme('W4A16_ASYM', ['Linear']).weights!);
    expect(asym.scaleDims).toEqual([4, 1]);
    expect(Array.from(asym.zeroPoint).every((z) => z === -8)).toBe(true);
    const w8 = await quantizeWeightRtn(w, 4, 64, presetScheme('W8A8', ['Linear']).weights!);
    expect(w8.scaleDims).toEqual([4, 1]);
    expect(Math.max(...w8.codes)).toBe(127);
  });
});
