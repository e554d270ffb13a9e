// Dense linear algebra for GPTQ in onnxruntime: the O(n³) parts of a recursive Cholesky with its triangular
// inverse, GPTQ's lazy block update, quadratic forms tr(D·H·Dᵀ) for output errors, and XᵀX (the Hessian
// statistic) as a helper other graphs embed. Every kernel has symbolic dimensions, so one session serves
// every shape; the Cholesky kernels run in float64 (onnxruntime's CPU MatMul/Gemm use MLAS DGEMM). They all
// run on the CPU provider whatever the device (`host`): float64 has no GPU kernels on WebGPU, and GPTQ's
// column loop reads every output in JavaScript, so a GPU would only add copies.

import { tensor, type Tensor } from '../../tensor.js';
import { float, Graph, type Value } from '../graph.js';
import type { KernelOptions, Runtime } from '../session.js';

// called between JavaScript loops (GPTQ's columns, the Cholesky recursion): threads sleep rather than spin between calls
const HOST: KernelOptions = { host: true, spin: false };

export type FloatType = 'float32' | 'float64';
type F64 = Tensor<'float64'>;

function dims2(t: Tensor, what: string): [number, number] {
  if (t.dims.length !== 2) throw new Error(`${what}: expected a matrix, found shape [${t.dims.join(', ')}]`);
  return t.dims as [number, number];
}

/** XᵀX in float64 of activations `x` [..., features]: every leading axis counts as a token axis */
export function gramOf(g: Graph, x: Value, features: number): Value {
  const flat = g.cast(g.reshape(x, [-1, features]), 'float64');
  return g.matmul(g.transpose(flat, [1, 0]), flat);
}

/**
 * XᵀX in float32 of activations `x` [..., features] (every leading axis a token axis): a float32 GEMM, ~3× the
 * speed of the float64 one on CPU; callers sum batches of a few thousand tokens in float64
 */
export function gramOf32(g: Graph, x: Value, features: number): Value {
  const flat = g.reshape(x, [-1, features]);
  return g.matmul(g.transpose(flat, [1, 0]), flat);
}

/**
 * XᵀX [n, n] (float32) of x [m, n] on the CPU provider whatever the device: the same GEMM as `gramOf32` inside a
 * CPU graph, so activations a GPU computed reduce as the CPU's own would (a GPU's float32 GEMM sums in another
 * order, and GPTQ's solve turns those last bits into flipped codes)
 */
export async function gram32(rt: Runtime, x: Tensor<'float32'>, into?: Float32Array): Promise<Float32Array> {
  const [, n] = dims2(x, 'gram32');
  const k = await rt.kernel(`linalg.gram32:${n}`, () => {
    const g = new Graph('gram32');
    g.output(gramOf32(g, g.input('x', 'float32', ['M', n]), n), 'xtx');
    return g;
  }, HOST);
  return (await k.run({ x }, undefined, into ? { xtx: tensor('float32', [n, n], into) } : undefined))['xtx']!.data as Float32Array;
}

/** XᵀX [n, n] (float64) of x [m, n] */
export async function gram(rt: Runtime, x: Tensor<'float32'>): Promise<F64> {
  const [, n] = dims2(x, 'gram');
  const k = await rt.kernel(`linalg.gram:${n}`, () => {
    const g = new Graph('gram');
    g.output(gramOf(g, g.input('x', 'float32', ['M', n]), n), 'xtx');
    return g;
  }, HOST);
  return (await k.run({ x }))['xtx'] as F64;
}

/**
 * One step of the recursive Cholesky of [[A11, ·], [A21, A22]] given Li11 = L11⁻¹:
 * L21 = A21·Li11ᵀ and the Schur complement S = A22 − L21·L21ᵀ (its Cholesky is L22).
 */
export async function choleskySchur(rt: Runtime, a21: F64, li11: F64, a22: F64, into?: { l21: F64; s: F64 }): Promise<{ l21: F64; s: F64 }> {
  const k = await rt.kernel('linalg.cholesky-schur', () => {
    const g = new Graph('cholesky_schur');
    const a21v = g.input('a21', 'float64', ['M', 'N']);
    const li11v = g.input('li11', 'float64', ['N', 'N']);
    const a22v = g.input('a22', 'float64', ['M', 'M']);
    const l21 = g.op('Gemm', [a21v, li11v], { transB: 1 });
    g.output(l21, 'l21');
    g.output(g.op('Gemm', [l21, l21, a22v], { transB: 1, alpha: float(-1), beta: float(1) }), 's');
    return g;
  }, HOST);
  const out = await k.run({ a21, li11, a22 }, undefined, into);
  return { l21: out['l21'] as F64, s: out['s'] as F64 };
}

/** the lower-left block of [[L11, 0], [L21, L22]]⁻¹: Li21 = −Li22·L21·Li11 (written into `into` when given) */
export async function lowerInverseCorner(rt: Runtime, li22: F64, l21: F64, li11: F64, into?: F64): Promise<F64> {
  const k = await rt.kernel('linalg.lower-inverse-corner', () => {
    const g = new Graph('lower_inverse_corner');
    const li22v = g.input('li22', 'float64', ['M', 'M']);
    const l21v = g.input('l21', 'float64', ['M', 'N']);
    const li11v = g.input('li11', 'float64', ['N', 'N']);
    const t = g.matmul(li22v, l21v);
    g.output(g.op('Gemm', [t, li11v], { alpha: float(-1) }), 'li21');
    return g;
  }, HOST);
  return (await k.run({ li22, l21, li11 }, undefined, into ? { li21: into } : undefined))['li21'] as F64;
}

/**
 * GPTQ's lazy block update with weights stored column-major: W [K, R] − Pᵀ·E, where P [B, K] holds rows of
 * the inverse-Hessian factor and E [B, R] the scaled errors of the B columns just quantized.
 */
export async function blockUpdate<D extends FloatType>(rt: Runtime, w: Tensor<D>, p: Tensor<D>, e: Tensor<D>): Promise<Tensor<D>> {
  const dtype = w.dtype;
  const k = await rt.kernel(`linalg.block-update:${dtype}`, () => {
    const g = new Graph('gptq_block_update');
    const wv = g.input('w', dtype, ['K', 'R']);
    const pv = g.input('p', dtype, ['B', 'K']);
    const ev = g.input('e', dtype, ['B', 'R']);
    g.output(g.op('Gemm', [pv, ev, wv], { transA: 1, alpha: float(-1), beta: float(1) }), 'out');
    return g;
  }, HOST);
  return (await k.run({ w, p, e }))['out'] as Tensor<D>;
}

/** rows of D·H·Dᵀ's diagonal, d·H·dᵀ for every row d of D [k, n] (float64) */
export async function rowQuadForms(rt: Runtime, d: F64, h: F64): Promise<Float64Array> {
  const k = await rt.kernel('linalg.row-quad-forms', () => {
    const g = new Graph('row_quad_forms');
    const dv = g.input('d', 'float64', ['K', 'N']);
    const hv = g.input('h', 'float64', ['N', 'N']);
    g.output(g.reduceSum(g.mul(g.matmul(dv, hv), dv), [1], false), 'q');
    return g;
  }, HOST);
  return (await k.run({ d, h }))['q']!.data as Float64Array;
}

/** Σ over rows of d·H·dᵀ for D [rows, n] given row by row by `row(r, out)`, in chunks of `chunk` rows */
export async function quadFormSum(
  rt: Runtime,
  rows: number,
  n: number,
  h: F64,
  row: (r: number, out: Float64Array) => void,
  chunk = Math.max(1, Math.floor(2 ** 22 / Math.max(n, 1))),
): Promise<number> {
  let total = 0;
  for (let r0 = 0; r0 < rows; r0 += chunk) {
    const m = Math.min(chunk, rows - r0);
    const d = new Float64Array(m * n);
    for (let r = 0; r < m; r++) row(r0 + r, d.subarray(r * n, (r + 1) * n));
    for (const q of await rowQuadForms(rt, tensor('float64', [m, n], d), h)) total += q;
  }
  return total;
}
