import { describe, expect, test } from 'vitest';
import { columnAbsMax, SmoothingError, smoothquantScales, summarizeScales, type WeightMatrix } from '../../src/algo/smoothquant.js';

const matrix = (rows: number[][]): WeightMatrix => ({ data: Float32Array.from(rows.flat()), rows: rows.length, cols: rows[0]!.length });

// two balance layers reading 4 channels: column maxima over both are [1, 4, 2, 0]
const q = matrix([
  [1, -4, 0.5, 0],
  [-0.5, 2, -2, 0],
]);
const k = matrix([[0.25, 1, 1, 0]]);

describe('columnAbsMax', () => {
  test('takes the largest magnitude of each input column over every balance layer', () => {
    expect(Array.from(columnAbsMax([q, k]))).toEqual([1, 4, 2, 0]);
  });

  test('refuses balance layers with different input widths', () => {
    expect(() => columnAbsMax([q, matrix([[1, 2]])])).toThrow(SmoothingError);
  });
});

describe('smoothquantScales', () => {
  test('computes max|X|^α / max|W|^(1−α) per channel (α = 0.5)', () => {
    const s = smoothquantScales(Float32Array.of(4, 1, 0.25, 9), [q, k], 0.5);
    // channel 0: √4/√1 = 2; 1: √1/√4 = 0.5; 2: √0.25/√2 = 0.353553; 3: max|W| = 0 clamps to 1e-5: 3 / √1e-5
    expect(s[0]).toBeCloseTo(2, 6);
    expect(s[1]).toBeCloseTo(0.5, 6);
    expect(s[2]).toBeCloseTo(0.3535534, 6);
    expect(s[3]).toBeCloseTo(3 / Math.sqrt(1e-5), 0);
  });

  test('α = 1 gives the activation maxima and α = 0 the inverse weight maxima', () => {
    expect(Array.from(smoothquantScales(Float32Array.of(4, 1, 0.25, 2), [q], 1))).toEqual([4, 1, 0.25, 2]);
    const s = smoothquantScales(Float32Array.of(4, 1, 0.25, 2), [q], 0);
    expect(s[0]).toBeCloseTo(1, 6);
    expect(s[1]).toBeCloseTo(0.25, 6);
    expect(s[2]).toBeCloseTo(0.5, 6);
  });

  test('clamps a dead activation channel to 1e-5 instead of 0', () => {
    const s = smoothquantScales(Float32Array.of(0, 1, 1, 1), [q], 0.8);
    expect(s[0]).toBeCloseTo(1e-5, 10);
    expect(s[0]).toBeGreaterThan(0);
  });

  test('rejects a smoothing strength outside [0, 1]', () => {
    try {
      smoothquantScales(Float32Array.of(1, 1, 1, 1), [q], 1.5);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(SmoothingError);
      expect((e as SmoothingError).reason).toBe('smoothing-strength-out-of-range');
    }
  });

  test('rejects statistics whose width differs from the balance layers', () => {
    expect(() => smoothquantScales(Float32Array.of(1, 1), [q], 0.5)).toThrow(/2 channels but the balance weights have 4/);
  });
});

describe('summarizeScales', () => {
  test('reports min, max and mean', () => {
    expect(summarizeScales(Float32Array.of(1, 3, 2))).toEqual({ min: 1, max: 3, mean: 2 });
  });
});
