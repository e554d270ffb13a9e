// Cholesky factorisation and triangular inverses of symmetric positive definite matrices, in float64.
// GPTQ (https://arxiv.org/abs/2210.17323, §3 "Cholesky reformulation") needs U, the upper Cholesky factor of
// H⁻¹ (torch.linalg.cholesky(H⁻¹, upper=True)). With J the reversal permutation, H = U⁻¹·U⁻ᵀ gives
// J·H·J = K·Kᵀ for the lower triangular K = J·U⁻¹·J, so U = J·K⁻¹·J: one Cholesky and one triangular inverse
// (2n³/3 flops) instead of torch's Cholesky, cholesky_inverse and second Cholesky (4n³/3).
// The factorisation is recursive: blocks up to `base` run in JavaScript, the O(n³) products of larger
// blocks (L21 = A21·L11⁻ᵀ, S = A22 − L21·L21ᵀ, L⁻¹'s corner −L22⁻¹·L21·L11⁻¹) in onnxruntime.

import { choleskySchur, lowerInverseCorner } from '../ort/kernels/linalg.js';
import type { Runtime } from '../ort/session.js';
import { tensor } from '../tensor.js';
import { ReasonedError } from '../diag/failure.js';

export interface CholeskyOptions {
  /** blocks of at most this size are factorised in JavaScript */
  readonly base?: number;
  /** a pivot at or below pivotTol × its diagonal entry counts as a failure (the matrix is numerically singular) */
  readonly pivotTol?: number;
}

export const DEFAULT_PIVOT_TOL = 1e-10;
const DEFAULT_BASE = 128;

/** the matrix is not numerically positive definite: its `index`-th pivot was `pivot` */
export class CholeskyError extends ReasonedError<'cholesky-not-positive-definite'> {
  readonly index: number;
  readonly pivot: number;
  readonly diagonal: number;
  constructor(index: number, pivot: number, diagonal: number) {
    super('cholesky-not-positive-definite', `Cholesky pivot ${index} is ${pivot} (diagonal entry ${diagonal}); expected a positive pivot above the tolerance`);
    this.index = index;
    this.pivot = pivot;
    this.diagonal = diagonal;
  }
}

/** lower L with a = L·Lᵀ ([n, n] row-major; the upper triangle of `a` is ignored), in plain JavaScript */
export function choleskyLowerJs(a: Float64Array, n: number, pivotTol = DEFAULT_PIVOT_TOL, diagRef?: Float64Array, offset = 0): Float64Array {
  const l = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const rj = j * n;
    let s = a[rj + j] as number;
    for (let k = 0; k < j; k++) s -= (l[rj + k] as number) ** 2;
    const ref = diagRef ? (diagRef[offset + j] as number) : (a[rj + j] as number);
    if (!(s > pivotTol * Math.abs(ref)) || !Number.isFinite(s)) throw new CholeskyError(offset + j, s, ref);
    const d = Math.sqrt(s);
    l[rj + j] = d;
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      let t = a[ri + j] as number;
      for (let k = 0; k < j; k++) t -= (l[ri + k] as number) * (l[rj + k] as number);
      l[ri + j] = t / d;
    }
  }
  return l;
}

/** L⁻¹ of a lower triangular L [n, n] by forward substitution, in plain JavaScript */
export function lowerInverseJs(l: Float64Array, n: number): Float64Array {
  const inv = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    inv[j * n + j] = 1 / (l[j * n + j] as number);
    for (let i = j + 1; i < n; i++) {
      let s = 0;
      for (let k = j; k < i; k++) s += (l[i * n + k] as number) * (inv[k * n + j] as number);
      inv[i * n + j] = -s / (l[i * n + i] as number);
    }
  }
  return inv;
}

/** rows [r0, r1) × columns [c0, c1) of a [·, n] row-major matrix, as a new contiguous matrix */
function block(a: Float64Array, n: number, r0: number, r1: number, c0: number, c1: number): Float64Array {
  const w = c1 - c0;
  const out = new Float64Array((r1 - r0) * w);
  for (let r = r0; r < r1; r++) out.set(a.subarray(r * n + c0, r * n + c1), (r - r0) * w);
  return out;
}

async function inverseFactor(rt: Runtime, a: Float64Array, n: number, diagRef: Float64Array, offset: number, o: Required<CholeskyOptions>): Promise<Float64Array> {
  if (n <= o.base) return lowerInverseJs(choleskyLowerJs(a, n, o.pivotTol, diagRef, offset), n);
  const n1 = Math.ceil(n / 2);
  const m = n - n1;
  const li11 = await inverseFactor(rt, block(a, n, 0, n1, 0, n1), n1, diagRef, offset, o);
  const { l21, s } = await choleskySchur(
    rt,
    tensor('float64', [m, n1], block(a, n, n1, n, 0, n1)),
    tensor('float64', [n1, n1], li11),
    tensor('float64', [m, m], block(a, n, n1, n, n1, n)),
  );
  const li22 = await inverseFactor(rt, s.data, m, diagRef, offset + n1, o);
  const li21 = await lowerInverseCorner(rt, tensor('float64', [m, m], li22), l21, tensor('float64', [n1, n1], li11));
  const out = new Float64Array(n * n);
  for (let r = 0; r < n1; r++) out.set(li11.subarray(r * n1, (r + 1) * n1), r * n);
  for (let r = 0; r < m; r++) {
    out.set(li21.data.subarray(r * n1, (r + 1) * n1), (n1 + r) * n);
    out.set(li22.subarray(r * m, (r + 1) * m), (n1 + r) * n + n1);
  }
  return out;
}

function withDefaults(o: CholeskyOptions): Required<CholeskyOptions> {
  return { base: Math.max(1, o.base ?? DEFAULT_BASE), pivotTol: o.pivotTol ?? DEFAULT_PIVOT_TOL };
}

/** L⁻¹ where a = L·Lᵀ is symmetric positive definite [n, n]; throws CholeskyError when a pivot fails */
export async function choleskyInverse(rt: Runtime, a: Float64Array, n: number, options: CholeskyOptions = {}): Promise<Float64Array> {
  const diag = new Float64Array(n);
  for (let i = 0; i < n; i++) diag[i] = a[i * n + i] as number;
  return inverseFactor(rt, a, n, diag, 0, withDefaults(options));
}

export interface UpperFactorOptions extends CholeskyOptions {
  /** added to the diagonal */
  readonly damp?: number;
  /** read h[order[i], order[j]]: the factor of the permuted matrix, which need not be materialised */
  readonly order?: Int32Array;
  /** replaces h's diagonal (original indices), e.g. dead inputs set to 1 */
  readonly diagonal?: Float64Array;
}

/** U, upper triangular with Uᵀ·U = (h + damp·I)⁻¹ (the factor GPTQ reads), via U = J·chol(J·h·J)⁻¹·J */
export async function inverseCholeskyUpper(rt: Runtime, h: Float64Array, n: number, options: UpperFactorOptions = {}): Promise<Float64Array> {
  const { damp = 0, order, diagonal } = options;
  const src = (i: number): number => (order ? (order[n - 1 - i] as number) : n - 1 - i);
  const rev = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const c = src(i);
    const si = c * n;
    for (let j = 0; j < n; j++) rev[i * n + j] = h[si + src(j)] as number;
    rev[i * n + i] = (diagonal ? (diagonal[c] as number) : (rev[i * n + i] as number)) + damp;
  }
  let k: Float64Array;
  try {
    k = await choleskyInverse(rt, rev, n, options);
  } catch (e) {
    // name the failing column of h, not of the reversed copy
    if (e instanceof CholeskyError) throw new CholeskyError(src(e.index), e.pivot, e.diagonal);
    throw e;
  }
  // U[i, j] = K⁻¹[n−1−i, n−1−j]
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ri = (n - 1 - i) * n;
    for (let j = i; j < n; j++) u[i * n + j] = k[ri + n - 1 - j] as number;
  }
  return u;
}
