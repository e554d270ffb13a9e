import { describe, expect, test, vi } from 'vitest';
import { relativeError } from '../../src/steps/quantized-module.js';
import { fakeQuantizeActivationsPerToken, quantizeDequantize, quantizeWeightRtn, quantizeWeightRtnJs, RTN_KERNEL_MIN_VALUES, type QuantizedWeight } from '../../src/algo/fake-quant.js';
import { Runtime } from '../../src/ort/session.js';
import { computeQParams, dequantizeWeight, quantizeWeight, weightMinMax } from '../../src/quant/qparams.js';
import { presetScheme } from '../../src/quant/scheme.js';
import { seededRandom } from '../../src/random.js';

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

describe('quantizeWeightRtn with a runtime', () => {
  // below RTN_KERNEL_MIN_VALUES the JavaScript path runs (a new shape's graph costs more than it saves), at and
  // above it the onnxruntime graph: either way the result is bit for bit the JavaScript one
  const same = (a: QuantizedWeight, b: QuantizedWeight): void => {
    expect(Buffer.from(a.codes.buffer, a.codes.byteOffset, a.codes.byteLength).equals(Buffer.from(b.codes.buffer, b.codes.byteOffset, b.codes.byteLength))).toBe(true);
    expect(Buffer.from(a.scale.buffer, a.scale.byteOffset, a.scale.byteLength).equals(Buffer.from(b.scale.buffer, b.scale.byteOffset, b.scale.byteLength))).toBe(true);
    expect(Array.from(a.zeroPoint)).toEqual(Array.from(b.zeroPoint));
    expect(Buffer.from(a.dequantized.buffer, a.dequantized.byteOffset, a.dequantized.byteLength).equals(Buffer.from(b.dequantized.buffer, b.dequantized.byteOffset, b.dequantized.byteLength))).toBe(true);
    expect(a.scaleDims).toEqual(b.scaleDims);
  };

  test.each(['W4A16', 'W4A16_ASYM', 'W8A8'])('%s: weights on both sides of the threshold equal the JavaScript path', async (scheme) => {
    const rt = new Runtime({ device: 'cpu' });
    try {
      const args = presetScheme(scheme, ['Linear']).weights!;
      const cols = 688;
      for (const rows of [8, Math.ceil(RTN_KERNEL_MIN_VALUES / cols)]) {
        const rand = seededRandom(rows);
        const w = Float32Array.from({ length: rows * cols }, () => (rand() - 0.5) * (rand() < 0.01 ? 4 : 0.2));
        const kernel = vi.spyOn(rt, 'kernel');
        same(await quantizeWeightRtn(w, rows, cols, args, { runtime: rt }), await quantizeWeightRtnJs(w, rows, cols, args));
        // onnxruntime runs only the large weight
        expect(kernel.mock.calls.filter(([key]) => key.startsWith('rtn.minmax:')).length).toBe(rows * cols >= RTN_KERNEL_MIN_VALUES ? 1 : 0);
        kernel.mockRestore();
      }
    } finally {
      await rt.close();
    }
  });
});

describe('quantizeDequantize', () => {
  const bits = (a: Float32Array): number[] => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
  const layouts = [
    { name: 'int4 symmetric groups of 32 (partial last group)', args: { num_bits: 4, symmetric: true, strategy: 'group', group_size: 32 } },
    { name: 'int4 asymmetric groups of 32', args: { num_bits: 4, symmetric: false, strategy: 'group', group_size: 32 } },
    { name: 'int8 symmetric per channel', args: { num_bits: 8, symmetric: true, strategy: 'channel', group_size: null } },
    { name: 'int8 asymmetric per tensor', args: { num_bits: 8, symmetric: false, strategy: 'tensor', group_size: null } },
    { name: 'int4 symmetric blocks of 4 × 16', args: { num_bits: 4, symmetric: true, strategy: 'block', group_size: null, block_structure: [4, 16] } },
  ] as const;
  for (const { name, args } of layouts) {
    test(`${name}: codes and dequantized values are bitwise the two-pass quantizeWeight / dequantizeWeight`, () => {
      const [rows, cols] = [9, 70];
      const rnd = seededRandom(7);
      // values on the grid's half steps as well (ties), zeros, a negative zero and a NaN
      const w = Float32Array.from({ length: rows * cols }, (_, i) => (i % 11 === 0 ? (i % 4) - 1.5 : i % 13 === 0 ? 0 : (rnd() - 0.5) * 4));
      w[5] = -0;
      w[17] = NaN;
      const { min, max } = weightMinMax(w.map((v) => (Number.isNaN(v) ? 0 : v)), rows, cols, args);
      const qp = computeQParams(min, max, args);
      const fused = quantizeDequantize(w, rows, cols, qp, args);
      const codes = quantizeWeight(w, rows, cols, qp, args);
      expect(Array.from(fused.codes)).toEqual(Array.from(codes));
      expect(bits(fused.dequantized)).toEqual(bits(dequantizeWeight(codes, rows, cols, qp, args)));
      // the relative error summed on the way is relativeError's (NaN here: w holds one)
      expect(fused.weightError).toBe(relativeError(w, fused.dequantized));
      const finite = w.map((v) => (Number.isNaN(v) ? 0.25 : v));
      const clean = quantizeDequantize(finite, rows, cols, qp, args);
      expect(clean.weightError).toBeGreaterThan(0);
      expect(clean.weightError).toBe(relativeError(finite, clean.dequantized));
    });
  }

  test('act-order groups (g_idx) walk the same scales', () => {
    const [rows, cols] = [3, 64];
    const args = { num_bits: 4, symmetric: true, strategy: 'group', group_size: 16 } as const;
    const rnd = seededRandom(3);
    const w = Float32Array.from({ length: rows * cols }, () => rnd() - 0.5);
    const gIdx = Int32Array.from({ length: cols }, (_, c) => (c * 7) % 4);
    const qp = computeQParams(Float32Array.from({ length: rows * 4 }, () => -0.5), Float32Array.from({ length: rows * 4 }, (_, i) => 0.1 + i / 10), args);
    const fused = quantizeDequantize(w, rows, cols, qp, args, gIdx);
    const codes = quantizeWeight(w, rows, cols, qp, args, gIdx);
    expect(Array.from(fused.codes)).toEqual(Array.from(codes));
    expect(bits(fused.dequantized)).toEqual(bits(dequantizeWeight(codes, rows, cols, qp, args, gIdx)));
  });

  test('values past the grid clamp to qmin / qmax (±Infinity too), under runs of equal g_idx and a partial group', () => {
    const [rows, cols] = [4, 45];
    for (const symmetric of [true, false]) {
      const args = { num_bits: 4, symmetric, strategy: 'group', group_size: 16 } as const;
      const rnd = seededRandom(11);
      // scales from a range half the data's: a quarter of the values fall past the grid on either side
      const w = Float32Array.from({ length: rows * cols }, () => (rnd() - 0.5) * 8);
      w[3] = Infinity;
      w[50] = -Infinity;
      const qp = computeQParams(new Float32Array(rows * 3).fill(-1), new Float32Array(rows * 3).fill(1.5), args);
      const gIdx = Int32Array.from({ length: cols }, (_, c) => Math.floor(c / 5) % 3);
      for (const g of [undefined, gIdx]) {
        const fused = quantizeDequantize(w, rows, cols, qp, args, g);
        const codes = quantizeWeight(w, rows, cols, qp, args, g);
        expect(Array.from(fused.codes)).toEqual(Array.from(codes));
        expect(new Set(codes)).toContain(7);
        expect(new Set(codes)).toContain(-8);
        expect(bits(fused.dequantized)).toEqual(bits(dequantizeWeight(codes, rows, cols, qp, args, g)));
        expect(fused.weightError).toBe(relativeError(w, fused.dequantized));
      }
    }
  });
});
