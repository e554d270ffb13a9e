// GPTQ onto float grids (FP8, NVFP4, MXFP4): the qparams are fixed before the column pass, so with a diagonal
// Hessian (nothing to push onto later columns) GPTQ is round-to-nearest code for code; with a correlated one
// it lowers GPTQ's objective tr((W − Q) H (W − Q)ᵀ) below round-to-nearest's, on the same grid.

import { afterAll, describe, expect, test } from 'vitest';
import { quantizeWeightRtn, sharedGlobalScales } from '../../src/algo/fake-quant.js';
import { gptqQuantize } from '../../src/algo/gptq.js';
import { Runtime } from '../../src/ort/session.js';
import { presetScheme, resolveQuantArgs } from '../../src/quant/scheme.js';

const rt = new Runtime({ device: 'cpu', threads: 2 });
afterAll(() => rt.close());

function weights(rows: number, cols: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: rows * cols }, (_, i) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * (1 + (i % cols) / 8);
  });
}

function correlatedHessian(n: number, seed: number): Float64Array {
  let s = seed;
  const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0), s / 2 ** 32 - 0.5);
  const m = 4 * n;
  const x = Float64Array.from({ length: m * n }, () => rnd());
  for (let t = 0; t < m; t++) for (let j = 1; j < n; j++) x[t * n + j] = (x[t * n + j] as number) + 0.8 * (x[t * n + j - 1] as number);
  const h = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) for (let t = 0; t < m; t++) h[i * n + j] = (h[i * n + j] as number) + (2 * (x[t * n + i] as number) * (x[t * n + j] as number)) / m;
  return h;
}

function objective(w: Float32Array, q: Float32Array, h: Float64Array, rows: number, n: number): number {
  let sum = 0;
  for (let r = 0; r < rows; r++) for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    sum += ((w[r * n + i] as number) - (q[r * n + i] as number)) * (h[i * n + j] as number) * ((w[r * n + j] as number) - (q[r * n + j] as number));
  }
  return sum;
}

const options = { runtime: rt, blockSize: 16, dampeningFrac: 0.01, actorder: null } as const;
const block8 = resolveQuantArgs({ num_bits: 8, type: 'float', strategy: 'block', block_structure: [8, 16] });

describe('GPTQ on float grids', () => {
  const rows = 24;
  const cols = 64;
  const w = weights(rows, cols, 5);
  const cases = [['FP8', presetScheme('FP8', ['Linear']).weights!], ['FP8_DYNAMIC', presetScheme('FP8_DYNAMIC', ['Linear']).weights!], ['block 8 × 16', block8],
    ['NVFP4', presetScheme('NVFP4', ['Linear']).weights!], ['MXFP4', presetScheme('MXFP4', ['Linear']).weights!]] as const;

  for (const [name, args] of cases) {
    test(`${name}: a diagonal Hessian gives the round-to-nearest codes and qparams`, async () => {
      const h = new Float64Array(cols * cols);
      for (let i = 0; i < cols; i++) h[i * cols + i] = 1 + i;
      const g = await gptqQuantize(w, rows, cols, h, args, options);
      const r = await quantizeWeightRtn(w, rows, cols, args);
      expect(Array.from(g.codes)).toEqual(Array.from(r.codes));
      expect(Array.from(g.scale)).toEqual(Array.from(r.scale));
      expect(g.globalScale).toBe(r.globalScale);
    });

    test(`${name}: a correlated Hessian lowers GPTQ's objective below round-to-nearest`, async () => {
      const h = correlatedHessian(cols, 9);
      const g = await gptqQuantize(w, rows, cols, h, args, options);
      const r = await quantizeWeightRtn(w, rows, cols, args);
      expect(Array.from(g.scale)).toEqual(Array.from(r.scale));
      expect(objective(w, g.dequantized, h, rows, cols)).toBeLessThan(0.9 * objective(w, r.dequantized, h, rows, cols));
    });
  }
});

describe('NVFP4 global scales shared by Linears that read the same input', () => {
  const nv = presetScheme('NVFP4', ['Linear']).weights!;
  const w8 = presetScheme('W8A8', ['Linear']).weights!;
  test('all NVFP4 siblings take the smallest global scale; a mixed input keeps each its own', () => {
    const m = (max: number) => Float32Array.of(max, -1, 0.5);
    const scales = sharedGlobalScales({ q: { weight: m(12), args: nv }, k: { weight: m(6), args: nv }, v: { weight: m(24), args: nv }, gate: { weight: m(12), args: nv }, up: { weight: m(6), args: w8 } }, [['q', 'k', 'v'], ['gate', 'up']]);
    expect([scales.get('q'), scales.get('k'), scales.get('v')]).toEqual([112, 112, 112]); // 2688 / 24
    expect(scales.get('gate')).toBe(224);
    expect(scales.has('up')).toBe(false);
  });
});
