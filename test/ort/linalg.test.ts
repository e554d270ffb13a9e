import { afterAll, describe, expect, test } from 'vitest';
import { CholeskyError, choleskyInverse, choleskyLowerJs, inverseCholeskyUpper, lowerInverseJs } from '../../src/algo/cholesky.js';
import { blockUpdate, gram, quadFormSum } from '../../src/ort/kernels/linalg.js';
import { Runtime } from '../../src/ort/session.js';
import { tensor } from '../../src/tensor.js';

const rt = new Runtime({ device: 'cpu', threads: 2 });
afterAll(() => rt.close());

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

/** XᵀX + 0.1·I for a random X [n + 8, n] with a shared component, so columns are correlated */
function spd(n: number, seed: number, extraRows = 8): Float64Array {
  const rnd = lcg(seed);
  const m = n + extraRows;
  const x = new Float64Array(m * n);
  for (let t = 0; t < m; t++) {
    const c = rnd();
    for (let j = 0; j < n; j++) x[t * n + j] = rnd() + c;
  }
  const a = new Float64Array(n * n);
  for (let t = 0; t < m; t++) for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) a[i * n + j]! += x[t * n + i]! * x[t * n + j]!;
  for (let i = 0; i < n; i++) a[i * n + i]! += 0.1;
  return a;
}

function matmul(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) {
    const v = a[i * n + k]!;
    if (v !== 0) for (let j = 0; j < n; j++) out[i * n + j]! += v * b[k * n + j]!;
  }
  return out;
}

const transpose = (a: Float64Array, n: number): Float64Array => a.map((_, k) => a[(k % n) * n + Math.floor(k / n)]!);
const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};
const maxAbs = (a: ArrayLike<number>): number => maxAbsDiff(a, new Float64Array(a.length));

describe('choleskyInverse', () => {
  for (const [n, base] of [[172, 40], [288, 64], [300, 128], [17, 128]] as const) {
    test(`matches the JavaScript Cholesky and triangular inverse on a random SPD ${n}×${n} (blocks of ${base})`, async () => {
      const a = spd(n, n);
      const want = lowerInverseJs(choleskyLowerJs(a, n), n);
      const got = await choleskyInverse(rt, a, n, { base });
      expect(maxAbsDiff(got, want) / maxAbs(want)).toBeLessThan(1e-9);
      // strictly lower triangular zeros stay zero
      for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) expect(got[i * n + j]).toBe(0);
    });
  }

  test('throws CholeskyError with the failing pivot for a singular matrix', async () => {
    const n = 90;
    const a = spd(n, 3, -40); // XᵀX of rank 50, plus 0.1·I
    for (let i = 0; i < n; i++) a[i * n + i]! -= 0.1;
    await expect(choleskyInverse(rt, a, n, { base: 32 })).rejects.toBeInstanceOf(CholeskyError);
    await expect(choleskyInverse(rt, a, n, { base: 32 })).rejects.toMatchObject({ reason: 'cholesky-not-positive-definite', index: 50 });
  });
});

describe('inverseCholeskyUpper', () => {
  test('returns an upper triangular U with Uᵀ·U = (H + damp·I)⁻¹ for a size that is no multiple of the block', async () => {
    const n = 172;
    const h = spd(n, 11);
    const u = await inverseCholeskyUpper(rt, h, n, { damp: 0.5, base: 48 });
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) expect(u[i * n + j]).toBe(0);
    const damped = h.map((v, k) => (Math.floor(k / n) === k % n ? v + 0.5 : v));
    const eye = matmul(matmul(transpose(u, n), u, n), damped, n);
    expect(maxAbsDiff(eye, Float64Array.from({ length: n * n }, (_, k) => (Math.floor(k / n) === k % n ? 1 : 0)))).toBeLessThan(1e-9);
    // upper Cholesky factor of the inverse: positive diagonal
    for (let i = 0; i < n; i++) expect(u[i * n + i]).toBeGreaterThan(0);
  });

  test('reads the matrix through a permutation as if it were permuted first', async () => {
    const n = 50;
    const h = spd(n, 12);
    const order = Int32Array.from({ length: n }, (_, i) => (i * 17) % n);
    const permuted = h.map((_, k) => h[order[Math.floor(k / n)]! * n + order[k % n]!]!);
    const a = await inverseCholeskyUpper(rt, h, n, { order, base: 16 });
    const b = await inverseCholeskyUpper(rt, permuted, n, { base: 16 });
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-9 * maxAbs(b));
  });

  test('replaces the diagonal when one is given, as if the matrix had it', async () => {
    const n = 30;
    const h = spd(n, 13);
    const diagonal = Float64Array.from({ length: n }, (_, i) => h[i * n + i]! + (i % 3 === 0 ? 5 : 0));
    const edited = h.map((v, k) => (Math.floor(k / n) === k % n ? diagonal[k % n]! : v));
    const a = await inverseCholeskyUpper(rt, h, n, { diagonal, damp: 0.25 });
    const b = await inverseCholeskyUpper(rt, edited, n, { damp: 0.25 });
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-12 * maxAbs(b));
  });

  test('names the failing column of the original matrix', async () => {
    const n = 6;
    const h = new Float64Array(n * n);
    for (let i = 0; i < n; i++) h[i * n + i] = i === 1 ? -2 : 1;
    await expect(inverseCholeskyUpper(rt, h, n)).rejects.toMatchObject({ index: 1, pivot: -2 });
  });
});

describe('linalg kernels', () => {
  test('gram computes XᵀX in float64', async () => {
    const m = 33;
    const n = 12;
    const x = Float32Array.from({ length: m * n }, lcg(4));
    const got = await gram(rt, tensor('float32', [m, n], x));
    expect(got.dtype).toBe('float64');
    const want = new Float64Array(n * n);
    for (let t = 0; t < m; t++) for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) want[i * n + j]! += x[t * n + i]! * x[t * n + j]!;
    expect(maxAbsDiff(got.data as Float64Array, want)).toBeLessThan(1e-12);
  });

  for (const dtype of ['float32', 'float64'] as const) {
    test(`blockUpdate computes W − Pᵀ·E in ${dtype}`, async () => {
      const [K, R, B] = [7, 5, 3];
      const rnd = lcg(5);
      const make = (len: number): Float32Array | Float64Array => {
        const v = Float64Array.from({ length: len }, rnd);
        return dtype === 'float32' ? Float32Array.from(v) : v;
      };
      const w = make(K * R);
      const p = make(B * K);
      const e = make(B * R);
      const t = (dims: number[], v: Float32Array | Float64Array) => tensor(dtype, dims, v as never);
      const out = await blockUpdate(rt, t([K, R], w), t([B, K], p), t([B, R], e));
      const want = Float64Array.from({ length: K * R }, (_, idx) => {
        const [k, r] = [Math.floor(idx / R), idx % R];
        let s = w[idx]!;
        for (let b = 0; b < B; b++) s -= p[b * K + k]! * e[b * R + r]!;
        return s;
      });
      expect(out.dtype).toBe(dtype);
      expect(maxAbsDiff(out.data as ArrayLike<number>, want)).toBeLessThan(dtype === 'float32' ? 1e-6 : 1e-14);
    });
  }

  test('quadFormSum adds d·H·dᵀ over rows, across chunks', async () => {
    const rows = 9;
    const n = 6;
    const h = spd(n, 6);
    const d = Float64Array.from({ length: rows * n }, lcg(7));
    let want = 0;
    for (let r = 0; r < rows; r++) for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) want += d[r * n + i]! * h[i * n + j]! * d[r * n + j]!;
    const got = await quadFormSum(rt, rows, n, tensor('float64', [n, n], h), (r, out) => out.set(d.subarray(r * n, (r + 1) * n)), 4);
    expect(got).toBeCloseTo(want, 10);
  });
});
