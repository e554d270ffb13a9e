// GPTQ's column pass (https://arxiv.org/abs/2210.17323, Algorithm 1): quantize column i with the qparams of
// its group, e = (w − q) / U_ii, and push e·U[i, j] onto every later column j. The pushes go in nested
// blocks (results do not depend on the sizes): inside the finest block (`subBlock` columns) at once in
// JavaScript; after each block of a level, one lazy update W[:, b:c] −= E[:, a:b]·U[a:b, b:c] of the rest of
// the enclosing block, a Gemm in onnxruntime. `blockSize` is one level; a coarser one (`superBlock`) cuts
// the number of passes over W. Weights are held column-major in solve order, so every block is contiguous.
// The qparams are fixed before the pass (llm-compressor): integer columns round half to even inline; float
// elements (fp8, fp4) round onto their grid (quant/element.ts) under the same fixed scales, NVFP4's being
// its fp8 group scales over the global scale.

import { blockUpdate, type FloatType } from '../ort/kernels/linalg.js';
import type { Runtime } from '../ort/session.js';
import { tensor } from '../tensor.js';
import type { QElement } from '../quant/element.js';

const f = Math.fround;
const TILE = 64;

export interface ColumnProblem {
  readonly rows: number;
  readonly cols: number;
  /** solve column j is original column order[j] */
  readonly order: Int32Array;
  /** original columns whose Hessian diagonal was 0: zeroed before the pass */
  readonly dead: Uint8Array;
  /** columns [c1, c2) solved by this instead of the integer quantizer (GGUF blocks); returns Σ e² */
  readonly solve?: (wt: Float32Array | Float64Array, codesT: Int8Array, dqT: Float32Array, c1: number, c2: number) => number;
  /** the scale column of each solve column */
  readonly groupOf: Int32Array;
  /** what each value is divided by, [rows or 1, groups] row-major (blocks expanded to rows) */
  readonly scale: Float32Array;
  readonly zeroPoint: Int8Array;
  readonly groups: number;
  /** one scale for the whole tensor */
  readonly tensorWide: boolean;
  readonly qmin: number;
  readonly qmax: number;
  /** a float grid (fp8, fp4); absent: integers rounded half to even */
  readonly element?: QElement;
  /** upper Cholesky factor of the (permuted, damped) inverse Hessian [cols, cols] */
  readonly u: Float64Array;
}

export interface ColumnPassOptions {
  readonly runtime: Runtime;
  readonly blockSize: number;
  readonly subBlock?: number;
  readonly superBlock?: number;
  readonly precision?: FloatType;
}

export interface ColumnPassResult {
  /** [rows, cols] in the original column order */
  readonly codes: Int8Array;
  /** (q − zp) · scale in fp32, q each code's grid value, [rows, cols] */
  readonly dequantized: Float32Array;
  /** Σ e² / 2 */
  readonly loss: number;
}

type Floats = Float32Array | Float64Array;

/** wt[j·R + r] = W[r, order[j]] (0 for dead columns), in tiles */
function gatherColumns(w: Float32Array, p: ColumnProblem, wt: Floats): void {
  const { rows: R, cols: n, order, dead } = p;
  for (let j0 = 0; j0 < n; j0 += TILE) {
    const j1 = Math.min(j0 + TILE, n);
    for (let r0 = 0; r0 < R; r0 += TILE) {
      const r1 = Math.min(r0 + TILE, R);
      for (let j = j0; j < j1; j++) {
        const c = order[j] as number;
        if (dead[c]) continue;
        for (let r = r0; r < r1; r++) wt[j * R + r] = w[r * n + c] as number;
      }
    }
  }
}

/** out[r·n + order[j]] = t[j·R + r], in tiles */
function scatterColumns<T extends Int8Array | Float32Array>(t: T, p: ColumnProblem, out: T): T {
  const { rows: R, cols: n, order } = p;
  for (let r0 = 0; r0 < R; r0 += TILE) {
    const r1 = Math.min(r0 + TILE, R);
    for (let j0 = 0; j0 < n; j0 += TILE) {
      const j1 = Math.min(j0 + TILE, n);
      for (let r = r0; r < r1; r++) for (let j = j0; j < j1; j++) out[r * n + (order[j] as number)] = t[j * R + r] as number;
    }
  }
  return out;
}

/**
 * columns [c1, c2): quantize each, push its error at once onto the later columns of the range; the
 * column's slot of wt then holds its scaled error, which the lazy updates read. Returns Σ e².
 */
function solveColumns(p: ColumnProblem, wt: Floats, codesT: Int8Array, dqT: Float32Array, c1: number, c2: number): number {
  const { rows: R, cols: n, u, scale, zeroPoint, groupOf, groups: G, tensorWide, qmin, qmax, element } = p;
  let loss = 0;
  for (let i = c1; i < c2; i++) {
    const inv = 1 / (u[i * n + i] as number);
    const g = groupOf[i] as number;
    const base = i * R;
    for (let r = 0; r < R; r++) {
      const k = tensorWide ? 0 : r * G + g;
      const s = scale[k] as number;
      const z = zeroPoint[k] as number;
      const x = wt[base + r] as number;
      let v = f(f(f(x) / s) + z);
      v = v < qmin ? qmin : v > qmax ? qmax : v;
      let q: number;
      if (element) {
        q = element.round(v);
        codesT[base + r] = element.code(q);
      } else {
        // round half to even
        q = Math.floor(v);
        const frac = v - q;
        if (frac > 0.5 || (frac === 0.5 && (q & 1) !== 0)) q += 1;
        codesT[base + r] = q;
      }
      const dq = f((q - z) * s);
      dqT[base + r] = dq;
      const e = (x - dq) * inv;
      wt[base + r] = e;
      loss += e * e;
    }
    for (let j = i + 1; j < c2; j++) {
      const hij = u[i * n + j] as number;
      if (hij === 0) continue;
      const jBase = j * R;
      for (let r = 0; r < R; r++) wt[jBase + r] = (wt[jBase + r] as number) - (wt[base + r] as number) * hij;
    }
  }
  return loss;
}

/** the column pass over `w` [rows, cols] (row-major, original order) */
export async function gptqColumns(w: Float32Array, p: ColumnProblem, o: ColumnPassOptions): Promise<ColumnPassResult> {
  const { rows: R, cols: n, u } = p;
  const wt: Floats = (o.precision ?? 'float32') === 'float32' ? new Float32Array(n * R) : new Float64Array(n * R);
  gatherColumns(w, p, wt);
  const codesT = new Int8Array(n * R);
  const dqT = new Float32Array(n * R);
  let loss = 0;

  const levels = [...new Set([o.superBlock ?? 1024, o.blockSize, Math.max(1, o.subBlock ?? 8)])].sort((a, b) => b - a);
  const solve = async (c1: number, c2: number, level: number): Promise<void> => {
    const step = levels[level];
    if (step === undefined) {
      loss += p.solve ? p.solve(wt, codesT, dqT, c1, c2) : solveColumns(p, wt, codesT, dqT, c1, c2);
      return;
    }
    if (c2 - c1 <= step) return solve(c1, c2, level + 1);
    for (let a = c1; a < c2; a += step) {
      const b = Math.min(a + step, c2);
      await solve(a, b, level + 1);
      if (b < c2) await lazyUpdate(o.runtime, wt, R, u, n, a, b, c2);
    }
  };
  await solve(0, n, 0);

  return {
    codes: scatterColumns(codesT, p, new Int8Array(R * n)),
    dequantized: scatterColumns(dqT, p, new Float32Array(R * n)),
    loss: loss / 2,
  };
}

/** wt[b:c2] −= U[a:b, b:c2]ᵀ · wt[a:b] (wt rows a..b hold scaled errors) in onnxruntime */
async function lazyUpdate(rt: Runtime, wt: Floats, R: number, u: Float64Array, n: number, a: number, b: number, c2: number): Promise<void> {
  const k = c2 - b;
  const m = b - a;
  const dtype: FloatType = wt instanceof Float32Array ? 'float32' : 'float64';
  const panel = dtype === 'float32' ? new Float32Array(m * k) : new Float64Array(m * k);
  for (let i = 0; i < m; i++) panel.set(u.subarray((a + i) * n + b, (a + i) * n + c2), i * k);
  const t = (dims: number[], v: Floats) => tensor(dtype, dims, v as never);
  const out = await blockUpdate(rt, t([k, R], wt.subarray(b * R, c2 * R)), t([m, k], panel), t([m, R], wt.subarray(a * R, b * R)));
  wt.set(out.data as Floats, b * R);
}
