import { afterAll, describe, expect, test } from 'vitest';
import { choleskyInverse, inverseCholeskyUpper } from '../../src/algo/cholesky.js';
import { Runtime } from '../../src/ort/session.js';
import { copyingCholeskyInverse, copyingInverseCholeskyUpper } from '../fixtures/cholesky-copying.js';

const rt = new Runtime({ device: 'cpu', threads: 2 });
afterAll(() => rt.close());

/** a random SPD matrix XᵀX/m + 0.01·I with correlated columns, X [m, n] from a fixed LCG */
function spd(n: number, seed: number): Float64Array {
  let s = seed >>> 0;
  const rnd = (): number => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0), s / 2 ** 32 - 0.5);
  const m = n + 16;
  const x = new Float64Array(m * n);
  for (let t = 0; t < m; t++) {
    const c = rnd();
    for (let j = 0; j < n; j++) x[t * n + j] = rnd() + c * (j % 3);
  }
  const a = new Float64Array(n * n);
  for (let t = 0; t < m; t++) for (let i = 0; i < n; i++) {
    const v = x[t * n + i]!;
    for (let j = 0; j < n; j++) a[i * n + j]! += v * x[t * n + j]!;
  }
  for (let i = 0; i < n; i++) a[i * n + i]! += 0.01;
  return a;
}

const sameBits = (a: Float64Array, b: Float64Array): number => {
  let diff = 0;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) diff++;
  return diff;
};

describe('in-place Cholesky factorisation', () => {
  // sizes that split unevenly at several levels (odd, ⌈n/2⌉ ≠ n/2) and a base case larger than the matrix
  for (const [n, base] of [[5, 2], [37, 4], [172, 16], [301, 32], [300, 128], [64, 128]] as const) {
    test(`L⁻¹ of a ${n}×${n} matrix (blocks of ${base}) equals the copying recursion bit for bit`, async () => {
      const a = spd(n, n + base);
      const keep = Float64Array.from(a);
      const got = await choleskyInverse(rt, a, n, { base });
      expect(sameBits(a, keep)).toBe(0); // the input is not touched
      expect(sameBits(got, await copyingCholeskyInverse(rt, a, n, base))).toBe(0);
    });
  }

  test('U of a permuted, damped matrix with a replaced diagonal equals the copying path bit for bit', async () => {
    const n = 203;
    const h = spd(n, 7);
    const keep = Float64Array.from(h);
    const order = Int32Array.from({ length: n }, (_, i) => (i * 37) % n);
    const diagonal = Float64Array.from({ length: n }, (_, i) => h[i * n + i]! * (i % 5 === 0 ? 2 : 1));
    const got = await inverseCholeskyUpper(rt, h, n, { damp: 0.03, order, diagonal, base: 24 });
    expect(sameBits(h, keep)).toBe(0);
    const want = await copyingInverseCholeskyUpper(rt, h, n, 0.03, order, diagonal, 24);
    expect(sameBits(got, want)).toBe(0);
    // a hand-checkable corner: the last diagonal entry of U is 1/√(the damped, replaced pivot of the last solve column)
    const last = order[n - 1]!;
    expect(got[n * n - 1]).toBeCloseTo(1 / Math.sqrt(diagonal[last]! + 0.03), 12);
  });

  test('U written into h itself (inPlace) equals the copying path bit for bit, with and without a permutation', async () => {
    for (const order of [Int32Array.from({ length: 203 }, (_, i) => (i * 37) % 203), undefined]) {
      const n = 203;
      const h = spd(n, 11);
      const diagonal = Float64Array.from({ length: n }, (_, i) => h[i * n + i]! * (i % 7 === 0 ? 3 : 1));
      const want = await copyingInverseCholeskyUpper(rt, h, n, 0.02, order, diagonal, 24);
      const got = await inverseCholeskyUpper(rt, h, n, { damp: 0.02, ...(order ? { order } : {}), diagonal, base: 24, inPlace: true });
      expect(got).toBe(h); // no second n² buffer
      expect(sameBits(got, want)).toBe(0);
    }
  });

  test('a 2×2 matrix by hand: [[4, 2], [2, 3]] gives L = [[2, 0], [1, √2]] and L⁻¹ = [[1/2, 0], [−1/(2√2), 1/√2]]', async () => {
    const got = await choleskyInverse(rt, Float64Array.of(4, 2, 2, 3), 2, { base: 1 });
    const r2 = Math.SQRT2;
    [0.5, 0, -1 / (2 * r2), 1 / r2].forEach((v, i) => expect(got[i]).toBeCloseTo(v, 14));
  });
});
