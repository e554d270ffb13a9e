import { afterAll, describe, expect, test } from 'vitest';
import { actOrderPermutation, GptqError, gptqFactor, gptqOutputError, gptqQuantize, resolveActOrder } from '../../src/algo/gptq.js';
import { computeQParams, quantizeWeight, weightMinMax } from '../../src/quant/qparams.js';
import { resolveQuantArgs } from '../../src/quant/scheme.js';
import { Runtime } from '../../src/ort/session.js';

const rt = new Runtime({ device: 'cpu', threads: 2 });
afterAll(() => rt.close());

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

/** 2XᵀX/m for X [m, n]; rank ≤ m */
function gramOfRandom(m: number, n: number, seed: number): Float64Array {
  const rnd = lcg(seed);
  const x = Float64Array.from({ length: m * n }, rnd);
  const h = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) for (let t = 0; t < m; t++) h[i * n + j]! += (2 * x[t * n + i]! * x[t * n + j]!) / m;
  return h;
}

const weight = (rows: number, cols: number, seed: number): Float32Array => Float32Array.from({ length: rows * cols }, lcg(seed));
const W8 = resolveQuantArgs({ num_bits: 8, strategy: 'channel' });
const W4G = resolveQuantArgs({ num_bits: 4, strategy: 'group', group_size: 16 });
const base = { runtime: rt, blockSize: 8, actorder: null } as const;

describe('gptqQuantize on singular and degenerate Hessians', () => {
  test('escalates dampening on a rank-deficient Hessian with dampening 0 and stays finite', async () => {
    const rows = 6;
    const cols = 40;
    const h = gramOfRandom(12, cols, 1); // rank 12 < 40
    const got = await gptqQuantize(weight(rows, cols, 2), rows, cols, h, W8, { ...base, dampeningFrac: 0, actorder: 'static' });
    expect(got.dampening.fallback).toBe(false);
    expect(got.dampening.tried[0]).toBe(0);
    expect(got.dampening.frac).toBeGreaterThan(0);
    expect(got.dampening.tried.at(-1)).toBe(got.dampening.frac);
    expect(got.dequantized.every(Number.isFinite)).toBe(true);
  });

  test('a factor written into H itself (overwrite) equals the separate one; each failed dampening restores H first', async () => {
    const cols = 40;
    const h = gramOfRandom(12, cols, 1); // rank 12 < 40: dampening 0 fails
    const o = { ...base, dampeningFrac: 0, actorder: 'static' } as const;
    const want = await gptqFactor(h, cols, 'static', o);
    const keep = Float64Array.from(h);
    let restores = 0;
    const got = await gptqFactor(h, cols, 'static', o, { restore: async (into) => void (restores++, into.set(keep)) });
    expect(got.u).toBe(h);
    expect(restores).toBe(want.dampening.tried.length - 1);
    expect(got.dampening).toEqual(want.dampening);
    expect(got.prepared).toEqual(want.prepared);
    expect(Buffer.from(got.u.buffer).equals(Buffer.from(want.u.buffer))).toBe(true);
  });

  test('keeps the requested dampening of 0 when the Hessian is positive definite', async () => {
    const h = gramOfRandom(80, 20, 3);
    const got = await gptqQuantize(weight(4, 20, 4), 4, 20, h, W8, { ...base, dampeningFrac: 0 });
    expect(got.dampening).toEqual({ frac: 0, value: 0, tried: [0], fallback: false });
  });

  test('zeroes dead input columns and quantizes them to exact zeros', async () => {
    const rows = 5;
    const cols = 24;
    const h = gramOfRandom(60, cols, 5);
    for (const dead of [3, 17]) for (let k = 0; k < cols; k++) h[dead * cols + k] = h[k * cols + dead] = 0;
    const got = await gptqQuantize(weight(rows, cols, 6), rows, cols, h, W4G, { ...base, dampeningFrac: 0.01, actorder: 'group' });
    expect(got.deadColumns).toBe(2);
    for (let r = 0; r < rows; r++) for (const dead of [3, 17]) expect(got.dequantized[r * cols + dead]).toBe(0);
    expect(got.dequantized.every(Number.isFinite)).toBe(true);
  });

  test('falls back to round-to-nearest with the observer qparams when no dampening makes H positive definite', async () => {
    const rows = 4;
    const cols = 10;
    const h = new Float64Array(cols * cols);
    for (let i = 0; i < cols; i++) h[i * cols + i] = -1;
    const w = weight(rows, cols, 7);
    const got = await gptqQuantize(w, rows, cols, h, W8, { ...base, dampeningFrac: 0.01 });
    expect(got.dampening.fallback).toBe(true);
    expect(got.dampening.frac).toBeNull();
    const { min, max } = weightMinMax(w, rows, cols, W8);
    expect(Array.from(got.codes)).toEqual(Array.from(quantizeWeight(w, rows, cols, computeQParams(min, max, W8), W8)));
  });

  test('rejects NaN in the Hessian with an error naming the module', async () => {
    const h = gramOfRandom(30, 8, 8);
    h[9] = Number.NaN;
    const run = gptqQuantize(weight(2, 8, 9), 2, 8, h, W8, { ...base, dampeningFrac: 0.01, name: 'model.layers.0.mlp.down_proj' });
    await expect(run).rejects.toThrow(GptqError);
    await expect(run).rejects.toThrow(/model\.layers\.0\.mlp\.down_proj: the Hessian has 1 NaN/);
  });

  test('rejects an infinite weight and a Hessian of the wrong size', async () => {
    const w = weight(2, 8, 10);
    w[3] = Number.POSITIVE_INFINITY;
    await expect(gptqQuantize(w, 2, 8, gramOfRandom(30, 8, 8), W8, { ...base, dampeningFrac: 0.01, name: 'q' })).rejects.toMatchObject({ reason: 'gptq-non-finite-input' });
    await expect(gptqQuantize(weight(2, 8, 1), 2, 8, new Float64Array(49), W8, { ...base, dampeningFrac: 0.01 })).rejects.toMatchObject({ reason: 'gptq-shape-mismatch' });
  });
});

describe('gptqQuantize on a diagonal Hessian', () => {
  test('reduces to round-to-nearest with the observer qparams, ties to even', async () => {
    const cols = 8;
    const w = Float32Array.of(0.5, 1.5, 2.5, -2.5, -0.5, 7.5, -3.5, 0.25, 7.5, -6.5, 5.5, 4.5, -1.5, 0, 3.5, -7.5);
    const h = new Float64Array(cols * cols);
    for (let i = 0; i < cols; i++) h[i * cols + i] = 1 + i;
    const W4 = resolveQuantArgs({ num_bits: 4, strategy: 'channel' });
    const got = await gptqQuantize(w, 2, cols, h, W4, { ...base, dampeningFrac: 0.01, actorder: 'static' });
    const { min, max } = weightMinMax(w, 2, cols, W4);
    const rtn = quantizeWeight(w, 2, cols, computeQParams(min, max, W4), W4);
    expect(Array.from(got.codes)).toEqual(Array.from(rtn));
    // scale 1: every .5 is an exact tie
    expect(Array.from(got.codes.subarray(0, 8))).toEqual([0, 2, 2, -2, 0, 7, -4, 0]);
  });
});

describe('actOrderPermutation', () => {
  test('orders columns by descending Hessian diagonal, ties by index', () => {
    const h = new Float64Array(16);
    [2, 5, 2, 9].forEach((v, i) => (h[i * 4 + i] = v));
    expect(Array.from(actOrderPermutation(h, 4))).toEqual([3, 1, 0, 2]);
  });
});

describe('resolveActOrder', () => {
  test('applies the stage default static to a scheme without actorder, recording it only for groups', () => {
    expect(resolveActOrder('static', W4G)).toEqual({ actorder: 'static', recorded: 'static' });
    expect(resolveActOrder('static', W8)).toEqual({ actorder: 'static', recorded: null });
  });

  test('lets the scheme decide when it sets actorder', () => {
    const grouped = { ...W4G, actorder: 'group' as const };
    expect(resolveActOrder('static', grouped)).toEqual({ actorder: 'group', recorded: 'group' });
    expect(resolveActOrder(null, W4G)).toEqual({ actorder: null, recorded: null });
  });

  test('falls back to no act order for group on a channel scheme, with a warning', () => {
    const r = resolveActOrder('group', W8);
    expect(r.actorder).toBeNull();
    expect(r.warning).toMatch(/needs strategy "group", found "channel"/);
  });
});

describe('gptqOutputError', () => {
  /** tr(D·H·Dᵀ), D = W − Q, written out */
  const quad = (w: Float32Array, q: Float32Array, h: Float64Array, rows: number, cols: number): number => {
    let t = 0;
    for (let r = 0; r < rows; r++) for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) t += (w[r * cols + i]! - q[r * cols + i]!) * h[i * cols + j]! * (w[r * cols + j]! - q[r * cols + j]!);
    return t;
  };

  for (const actorder of [null, 'static', 'group'] as const) {
    test(`equals the quadratic form tr(D·H·Dᵀ) from the solve's own loss (dead inputs, dampening 0.05, act order ${actorder})`, async () => {
      const [rows, cols] = [12, 48];
      const h = gramOfRandom(80, cols, 5);
      // inputs 3 and 17 never fire: their rows and columns of H are 0
      for (const d of [3, 17]) for (let k = 0; k < cols; k++) h[d * cols + k] = h[k * cols + d] = 0;
      const w = weight(rows, cols, 6);
      const got = await gptqQuantize(w, rows, cols, h, W4G, { ...base, dampeningFrac: 0.05, actorder });
      expect(got.deadColumns).toBe(2);
      const want = quad(w, got.dequantized, h, rows, cols);
      const from = gptqOutputError(w, rows, cols, h, got.dequantized, got)!;
      expect(Math.abs(from - want) / want).toBeLessThan(1e-6);
      // without the dampening term the identity is off by λ‖D‖², far above that
      expect(Math.abs(2 * got.loss - want) / want).toBeGreaterThan(1e-3);
    });
  }

  test('is undefined when the solve fell back to round-to-nearest', () => {
    const r = { loss: 1, dampening: { frac: null, value: 0, tried: [0], fallback: true } };
    expect(gptqOutputError(new Float32Array(4), 2, 2, Float64Array.of(1, 0, 0, 1), new Float32Array(4), r)).toBeUndefined();
  });
});
