import { afterAll, describe, expect, test } from 'vitest';
import { gptqQuantize, type GptqOptions } from '../../src/algo/gptq.js';
import { computeQParams, dequantizeWeight, qRange, weightMinMax } from '../../src/quant/qparams.js';
import { roundHalfEven } from '../../src/quant/round.js';
import { resolveQuantArgs, type ActOrder, type QuantArgs } from '../../src/quant/scheme.js';
import { Runtime } from '../../src/ort/session.js';

// The reference is a plain, unblocked GPTQ written here: every matrix dense, every loop obvious, the inverse
// Hessian factor computed the way torch does (Cholesky of H, H⁻¹ = L⁻ᵀ·L⁻¹, upper Cholesky of H⁻¹), each
// column's error pushed onto every later column at once, qparams from the minmax observer up front.

const f = Math.fround;

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** a normal-ish sample (sum of uniforms) */
function gauss(rnd: () => number): number {
  return rnd() + rnd() + rnd() + rnd() - 2;
}

/** H = XᵀX for X [m, n] with correlated, unevenly scaled columns */
function hessianOf(m: number, n: number, seed: number): Float64Array {
  const rnd = lcg(seed);
  const x = new Float64Array(m * n);
  for (let t = 0; t < m; t++) {
    const common = gauss(rnd);
    for (let j = 0; j < n; j++) x[t * n + j] = (gauss(rnd) + 0.7 * common) * (1 + (j % 7) / 2);
  }
  const h = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < m; t++) s += (x[t * n + i] as number) * (x[t * n + j] as number);
      h[i * n + j] = (2 * s) / m;
    }
  }
  return h;
}

function randomWeight(rows: number, cols: number, seed: number): Float32Array {
  const rnd = lcg(seed);
  return Float32Array.from({ length: rows * cols }, () => f(gauss(rnd) * 0.05));
}

function chol(a: number[][]): number[][] {
  const n = a.length;
  const l = a.map(() => new Array<number>(n).fill(0));
  for (let j = 0; j < n; j++) {
    let s = a[j]![j]!;
    for (let k = 0; k < j; k++) s -= l[j]![k]! ** 2;
    if (!(s > 0)) throw new Error(`reference Cholesky failed at ${j}`);
    l[j]![j] = Math.sqrt(s);
    for (let i = j + 1; i < n; i++) {
      let t = a[i]![j]!;
      for (let k = 0; k < j; k++) t -= l[i]![k]! * l[j]![k]!;
      l[i]![j] = t / l[j]![j]!;
    }
  }
  return l;
}

function inverseOfLower(l: number[][]): number[][] {
  const n = l.length;
  const inv = l.map(() => new Array<number>(n).fill(0));
  for (let c = 0; c < n; c++) {
    for (let i = 0; i < n; i++) {
      let s = i === c ? 1 : 0;
      for (let k = 0; k < i; k++) s -= l[i]![k]! * inv[k]![c]!;
      inv[i]![c] = s / l[i]![i]!;
    }
  }
  return inv;
}

interface ReferenceResult {
  codes: Int8Array;
  scale: Float32Array;
  zeroPoint: Int8Array;
  gIdx?: Int32Array;
}

function referenceGptq(w: Float32Array, rows: number, cols: number, hessian: Float64Array, args: QuantArgs, dampFrac: number, actorder: ActOrder | null): ReferenceResult {
  const n = cols;
  const perm = Array.from({ length: n }, (_, i) => i);
  if (actorder) perm.sort((a, b) => hessian[b * n + b]! - hessian[a * n + a]! || a - b);
  const W = Array.from({ length: rows }, (_, r) => perm.map((c) => w[r * n + c]!));
  const H = perm.map((i) => perm.map((j) => hessian[i * n + j]!));
  const observed = actorder === 'group' ? Float32Array.from(W.flat()) : w;
  const { min, max } = weightMinMax(observed, rows, n, args);
  const qp = computeQParams(min, max, args);
  const G = args.strategy === 'group' ? Math.ceil(n / args.group_size!) : 1;
  const group = (j: number): number => (args.strategy !== 'group' ? 0 : Math.floor((actorder === 'group' ? j : perm[j]!) / args.group_size!));

  let mean = 0;
  for (let j = 0; j < n; j++) {
    if (H[j]![j] === 0) {
      H[j]![j] = 1;
      for (const row of W) row[j] = 0;
    }
    mean += H[j]![j]! / n;
  }
  for (let j = 0; j < n; j++) H[j]![j]! += dampFrac * mean;
  const li = inverseOfLower(chol(H));
  const hinv = li.map((_, i) => li.map((__, j) => li.reduce((s, row) => s + row[i]! * row[j]!, 0)));
  const lu = chol(hinv);
  const U = lu.map((_, i) => lu.map((__, j) => lu[j]![i]!));

  const { qmin, qmax } = qRange(args.num_bits);
  const codes = new Int8Array(rows * n);
  for (let i = 0; i < n; i++) {
    for (let r = 0; r < rows; r++) {
      const k = args.strategy === 'tensor' ? 0 : r * G + group(i);
      const s = qp.scale[k]!;
      const z = qp.zeroPoint[k]!;
      const x = W[r]![i]!;
      const q = roundHalfEven(Math.min(Math.max(f(f(f(x) / s) + z), qmin), qmax));
      codes[r * n + perm[i]!] = q;
      const e = (x - f((q - z) * s)) / U[i]![i]!;
      for (let j = i + 1; j < n; j++) W[r]![j]! -= e * U[i]![j]!;
    }
  }
  const result: ReferenceResult = { codes, scale: qp.scale, zeroPoint: qp.zeroPoint };
  if (actorder === 'group') {
    result.gIdx = new Int32Array(n);
    for (let j = 0; j < n; j++) result.gIdx[perm[j]!] = group(j);
  }
  return result;
}

const rt = new Runtime({ device: 'cpu', threads: 2 });
afterAll(() => rt.close());

interface Case {
  name: string;
  rows: number;
  cols: number;
  args: QuantArgs;
  actorder: ActOrder | null;
  blockSizes: number[];
  damp?: number;
  choleskyBase?: number;
  subBlock?: number;
}

const group = (num_bits: number, symmetric: boolean, group_size: number): QuantArgs => resolveQuantArgs({ num_bits, symmetric, group_size, strategy: 'group' });
const channel = (num_bits: number, symmetric: boolean): QuantArgs => resolveQuantArgs({ num_bits, symmetric, strategy: 'channel' });

const CASES: Case[] = [
  { name: 'int4 sym group 8, 37 columns (partial last group)', rows: 9, cols: 37, args: group(4, true, 8), actorder: null, blockSizes: [3, 8, 16, 64] },
  { name: 'int4 asym group 8, 37 columns', rows: 9, cols: 37, args: group(4, false, 8), actorder: null, blockSizes: [5, 64] },
  { name: 'int4 sym group 8, actorder static', rows: 9, cols: 37, args: group(4, true, 8), actorder: 'static', blockSizes: [4, 16, 64] },
  { name: 'int4 asym group 8, actorder static', rows: 7, cols: 37, args: group(4, false, 8), actorder: 'static', blockSizes: [6, 64] },
  { name: 'int4 sym group 8, actorder group', rows: 9, cols: 37, args: group(4, true, 8), actorder: 'group', blockSizes: [4, 16, 64] },
  { name: 'int4 asym group 8, actorder group', rows: 7, cols: 37, args: group(4, false, 8), actorder: 'group', blockSizes: [7, 64] },
  { name: 'int8 sym channel', rows: 11, cols: 30, args: channel(8, true), actorder: null, blockSizes: [4, 64] },
  { name: 'int8 sym channel, actorder static, no dampening', rows: 11, cols: 30, args: channel(8, true), actorder: 'static', blockSizes: [4, 64], damp: 0 },
  { name: 'int8 asym group 16', rows: 5, cols: 40, args: group(8, false, 16), actorder: null, blockSizes: [16, 13] },
  { name: 'int4 sym tensor', rows: 6, cols: 24, args: resolveQuantArgs({ num_bits: 4, strategy: 'tensor' }), actorder: null, blockSizes: [5] },
  {
    name: 'int4 sym group 128 on 300 columns, recursive Cholesky, odd sub-blocks',
    rows: 5,
    cols: 300,
    args: group(4, true, 128),
    actorder: 'group',
    blockSizes: [128, 50],
    choleskyBase: 40,
    subBlock: 7,
  },
];

function options(c: Case, blockSize: number): GptqOptions {
  return {
    runtime: rt,
    blockSize,
    dampeningFrac: c.damp ?? 0.01,
    actorder: c.actorder,
    precision: 'float64',
    ...(c.subBlock ? { subBlock: c.subBlock } : {}),
    ...(c.choleskyBase ? { cholesky: { base: c.choleskyBase } } : {}),
  };
}

describe('gptqQuantize', () => {
  for (const [k, c] of CASES.entries()) {
    for (const blockSize of c.blockSizes) {
      test(`matches the unblocked reference: ${c.name}, block ${blockSize}`, async () => {
        const w = randomWeight(c.rows, c.cols, 100 + k);
        const h = hessianOf(c.cols + 16, c.cols, 200 + k);
        const ref = referenceGptq(w, c.rows, c.cols, h, c.args, c.damp ?? 0.01, c.actorder);
        const got = await gptqQuantize(w, c.rows, c.cols, h, c.args, options(c, blockSize));
        expect(Array.from(got.scale)).toEqual(Array.from(ref.scale));
        expect(Array.from(got.zeroPoint)).toEqual(Array.from(ref.zeroPoint));
        expect(Array.from(got.codes)).toEqual(Array.from(ref.codes));
        if (ref.gIdx) expect(Array.from(got.gIdx ?? [])).toEqual(Array.from(ref.gIdx));
        else expect(got.gIdx).toBeUndefined();
        expect(got.dampening).toMatchObject({ frac: c.damp ?? 0.01, fallback: false });
      });
    }
  }

  test('in float32 (the default) agrees with the float64 solve up to near-ties and their cascade', async () => {
    const c = CASES[2]!;
    const [rows, cols] = [24, 160];
    const w = randomWeight(rows, cols, 41);
    const h = hessianOf(200, cols, 42);
    const f64 = await gptqQuantize(w, rows, cols, h, c.args, { ...options(c, 32), precision: 'float64' });
    const f32 = await gptqQuantize(w, rows, cols, h, c.args, { ...options(c, 32), precision: 'float32' });
    const same = f32.codes.filter((q, i) => q === f64.codes[i]).length;
    expect(same / f32.codes.length).toBeGreaterThan(0.99);
    expect(Math.abs(f32.loss - f64.loss) / f64.loss).toBeLessThan(0.01);
  });

  test('changes codes relative to round-to-nearest, and the reference notices a wrong act order', async () => {
    const c = CASES[2]!;
    const w = randomWeight(c.rows, c.cols, 102);
    const h = hessianOf(c.cols + 16, c.cols, 202);
    const got = await gptqQuantize(w, c.rows, c.cols, h, c.args, options(c, 16));
    const unordered = referenceGptq(w, c.rows, c.cols, h, c.args, 0.01, null);
    const { min, max } = weightMinMax(w, c.rows, c.cols, c.args);
    const qp = computeQParams(min, max, c.args);
    const { qmin, qmax } = qRange(4);
    const rtn = Int8Array.from(w, (x, i) => roundHalfEven(Math.min(Math.max(f(x / qp.scale[Math.floor(i / c.cols) * 5 + Math.floor((i % c.cols) / 8)]!), qmin), qmax)));
    expect(Array.from(got.codes)).not.toEqual(Array.from(rtn));
    expect(Array.from(got.codes)).not.toEqual(Array.from(unordered.codes));
  });

  test('returns dequantized weights consistent with its codes, qparams and g_idx', async () => {
    const c = CASES[4]!;
    const w = randomWeight(c.rows, c.cols, 7);
    const h = hessianOf(60, c.cols, 8);
    const got = await gptqQuantize(w, c.rows, c.cols, h, c.args, options(c, 16));
    expect(got.scaleDims).toEqual([c.rows, 5]);
    const qp = { scale: got.scale, zeroPoint: got.zeroPoint };
    expect(Array.from(got.dequantized)).toEqual(Array.from(dequantizeWeight(got.codes, c.rows, c.cols, qp, c.args, got.gIdx)));
    // every group but the partial last one holds exactly group_size columns
    const sizes = new Array<number>(5).fill(0);
    for (const g of got.gIdx!) sizes[g]!++;
    expect(sizes).toEqual([8, 8, 8, 8, 5]);
  });

  test('lowers the Hessian-weighted output error below round-to-nearest', async () => {
    const rows = 16;
    const cols = 64;
    const args = group(4, true, 16);
    const w = randomWeight(rows, cols, 31);
    const h = hessianOf(96, cols, 32);
    const got = await gptqQuantize(w, rows, cols, h, args, { runtime: rt, blockSize: 16, dampeningFrac: 0.01, actorder: 'static' });
    const { min, max } = weightMinMax(w, rows, cols, args);
    const qp = computeQParams(min, max, args);
    const { qmin, qmax } = qRange(4);
    const rtn = Float32Array.from(w, (x, i) => {
      const s = qp.scale[Math.floor(i / cols) * 4 + Math.floor((i % cols) / 16)]!;
      return f(roundHalfEven(Math.min(Math.max(f(x / s), qmin), qmax)) * s);
    });
    const quad = (q: Float32Array): number => {
      let t = 0;
      for (let r = 0; r < rows; r++) {
        for (let i = 0; i < cols; i++) {
          for (let j = 0; j < cols; j++) t += (w[r * cols + i]! - q[r * cols + i]!) * h[i * cols + j]! * (w[r * cols + j]! - q[r * cols + j]!);
        }
      }
      return t;
    };
    expect(quad(got.dequantized)).toBeLessThan(0.8 * quad(rtn));
  });
});
