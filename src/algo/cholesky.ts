// Cholesky factorisation and triangular inverses of symmetric positive definite matrices, in float64.
// GPTQ (https://arxiv.org/abs/2210.17323, §3 "Cholesky reformulation") needs U, the upper Cholesky factor of
// H⁻¹ (torch.linalg.cholesky(H⁻¹, upper=True)). With J the reversal permutation, H = U⁻¹·U⁻ᵀ gives
// J·H·J = K·Kᵀ for the lower triangular K = J·U⁻¹·J, so U = J·K⁻¹·J: one Cholesky and one triangular inverse
// (2n³/3 flops) instead of torch's Cholesky, cholesky_inverse and second Cholesky (4n³/3).
// The factorisation is recursive: blocks up to `base` run in JavaScript, the O(n³) products of larger
// blocks (L21 = A21·L11⁻ᵀ, S = A22 − L21·L21ᵀ, L⁻¹'s corner −L22⁻¹·L21·L11⁻¹) in onnxruntime. It runs in place
// in one n² buffer (plus 1.25 n² of reused scratch for the onnxruntime operands), which matters at GPTQ's widest
// input: down_proj's 5632² float64 Hessian is 242 MiB.

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

/** rows [r0, r0 + rows) × columns [c0, c0 + cols) of `a` (row stride `ld`) into `out` (row-major, contiguous) */
function gather(a: Float64Array, ld: number, r0: number, c0: number, rows: number, cols: number, out: Float64Array): Float64Array {
  for (let r = 0; r < rows; r++) out.set(a.subarray((r0 + r) * ld + c0, (r0 + r) * ld + c0 + cols), r * cols);
  return out;
}

/** the lower triangle of the diagonal block [off, off + k)² of `a` into `out`, zeros above the diagonal */
function gatherLower(a: Float64Array, ld: number, off: number, k: number, out: Float64Array): Float64Array {
  for (let r = 0; r < k; r++) {
    const row = out.subarray(r * k, (r + 1) * k);
    row.set(a.subarray((off + r) * ld + off, (off + r) * ld + off + r + 1));
    row.fill(0, r + 1);
  }
  return out;
}

/** `src` [rows, cols] back into `a` (row stride `ld`) at (r0, c0) */
function scatter(src: Float64Array, a: Float64Array, ld: number, r0: number, c0: number, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) a.set(src.subarray(r * cols, (r + 1) * cols), (r0 + r) * ld + c0);
}

/**
 * Buffers the onnxruntime calls read and write, allocated once per factorisation at the top level's block size
 * (⌈n/2⌉², 5 of them: 1.25 n² values) and reused at every level, so the recursion allocates nothing that waits for
 * the garbage collector; results are written into them (`into`) and copied back into the matrix.
 */
class Scratch {
  readonly #bufs: Float64Array[];
  constructor(n: number) {
    const half = Math.ceil(n / 2);
    this.#bufs = Array.from({ length: 5 }, () => new Float64Array(half * half));
  }
  get(i: number, size: number): Float64Array {
    return (this.#bufs[i] as Float64Array).subarray(0, size);
  }
}

/**
 * the diagonal block [off, off + k)² of `a` (row stride `ld`, symmetric positive definite there) replaced in place
 * by L⁻¹ in its lower triangle, L·Lᵀ its Cholesky factorisation; above the diagonal the block keeps what it had
 * (the copying recursion's arithmetic, block for block: every kernel sees the same operands)
 */
async function factorInPlace(rt: Runtime, a: Float64Array, ld: number, off: number, k: number, diagRef: Float64Array, o: Required<CholeskyOptions>, scratch: Scratch): Promise<void> {
  if (k <= o.base) {
    const inv = lowerInverseJs(choleskyLowerJs(gather(a, ld, off, off, k, k, new Float64Array(k * k)), k, o.pivotTol, diagRef, off), k);
    scatter(inv, a, ld, off, off, k, k);
    return;
  }
  const n1 = Math.ceil(k / 2);
  const m = k - n1;
  const [o1, o2] = [off, off + n1];
  await factorInPlace(rt, a, ld, o1, n1, diagRef, o, scratch);
  const t = (dims: [number, number], data: Float64Array) => tensor('float64', dims, data);
  const into = { l21: t([m, n1], scratch.get(3, m * n1)), s: t([m, m], scratch.get(4, m * m)) };
  await choleskySchur(rt, t([m, n1], gather(a, ld, o2, o1, m, n1, scratch.get(0, m * n1))), t([n1, n1], gatherLower(a, ld, o1, n1, scratch.get(1, n1 * n1))), t([m, m], gather(a, ld, o2, o2, m, m, scratch.get(2, m * m))), into);
  scatter(into.l21.data, a, ld, o2, o1, m, n1);
  scatter(into.s.data, a, ld, o2, o2, m, m);
  await factorInPlace(rt, a, ld, o2, m, diagRef, o, scratch);
  const li21 = t([m, n1], scratch.get(3, m * n1));
  await lowerInverseCorner(rt, t([m, m], gatherLower(a, ld, o2, m, scratch.get(0, m * m))), t([m, n1], gather(a, ld, o2, o1, m, n1, scratch.get(1, m * n1))), t([n1, n1], gatherLower(a, ld, o1, n1, scratch.get(2, n1 * n1))), li21);
  scatter(li21.data, a, ld, o2, o1, m, n1);
}

/** `a` [n, n] replaced in place by L⁻¹ (lower triangle; what was above the diagonal is left there) */
async function lowerInverseInPlace(rt: Runtime, a: Float64Array, n: number, options: CholeskyOptions): Promise<void> {
  const diag = new Float64Array(n);
  for (let i = 0; i < n; i++) diag[i] = a[i * n + i] as number;
  const o = withDefaults(options);
  await factorInPlace(rt, a, n, 0, n, diag, o, new Scratch(n > o.base ? n : 0));
}

function withDefaults(o: CholeskyOptions): Required<CholeskyOptions> {
  return { base: Math.max(1, o.base ?? DEFAULT_BASE), pivotTol: o.pivotTol ?? DEFAULT_PIVOT_TOL };
}

/** L⁻¹ where a = L·Lᵀ is symmetric positive definite [n, n]; throws CholeskyError when a pivot fails */
export async function choleskyInverse(rt: Runtime, a: Float64Array, n: number, options: CholeskyOptions = {}): Promise<Float64Array> {
  const out = Float64Array.from(a);
  await lowerInverseInPlace(rt, out, n, options);
  for (let i = 0; i < n; i++) out.fill(0, i * n + i + 1, (i + 1) * n);
  return out;
}

export interface UpperFactorOptions extends CholeskyOptions {
  /** added to the diagonal */
  readonly damp?: number;
  /** read h[order[i], order[j]]: the factor of the permuted matrix, which need not be materialised */
  readonly order?: Int32Array;
  /** replaces h's diagonal (original indices), e.g. dead inputs set to 1 */
  readonly diagonal?: Float64Array;
  /**
   * true: `h` itself becomes U (no second n² buffer); it is lost whether or not the factorisation succeeds, so a
   * caller that may retry (dampening escalation) keeps a way to restore it
   */
  readonly inPlace?: boolean;
}

/** `a` [n, n] becomes a[src(i), src(j)] in place (rows by their permutation's cycles, then each row), two rows of scratch */
function permuteSymmetric(a: Float64Array, n: number, src: (i: number) => number): void {
  const tmp = new Float64Array(n);
  const seen = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    if (seen[i] || src(i) === i) continue;
    tmp.set(a.subarray(i * n, (i + 1) * n));
    for (let j = i; ; ) {
      seen[j] = 1;
      const k = src(j);
      if (k === i) {
        a.set(tmp, j * n);
        break;
      }
      a.copyWithin(j * n, k * n, (k + 1) * n);
      j = k;
    }
  }
  for (let i = 0; i < n; i++) {
    const row = a.subarray(i * n, (i + 1) * n);
    tmp.set(row);
    for (let j = 0; j < n; j++) row[j] = tmp[src(j)] as number;
  }
}

/**
 * U, upper triangular with Uᵀ·U = (h + damp·I)⁻¹ (the factor GPTQ reads), via U = J·chol(J·h·J)⁻¹·J, in one n²
 * buffer: the reversed (permuted, damped) h is written into it, factorised in place, and turned around in place
 * (reversing the row-major array is J·M·J); that buffer is a new one (`h` only read) or, with `inPlace`, `h`
 */
export async function inverseCholeskyUpper(rt: Runtime, h: Float64Array, n: number, options: UpperFactorOptions = {}): Promise<Float64Array> {
  const { damp = 0, order, diagonal, inPlace = false } = options;
  const src = (i: number): number => (order ? (order[n - 1 - i] as number) : n - 1 - i);
  let a: Float64Array;
  if (inPlace) {
    a = h;
    permuteSymmetric(a, n, src);
    for (let i = 0; i < n; i++) a[i * n + i] = (diagonal ? (diagonal[src(i)] as number) : (a[i * n + i] as number)) + damp;
  } else {
    a = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      const c = src(i);
      const si = c * n;
      for (let j = 0; j < n; j++) a[i * n + j] = h[si + src(j)] as number;
      a[i * n + i] = (diagonal ? (diagonal[c] as number) : (a[i * n + i] as number)) + damp;
    }
  }
  try {
    await lowerInverseInPlace(rt, a, n, options);
  } catch (e) {
    // name the failing column of h, not of the reversed copy
    if (e instanceof CholeskyError) throw new CholeskyError(src(e.index), e.pivot, e.diagonal);
    throw e;
  }
  // U[i, j] = K⁻¹[n−1−i, n−1−j]: the whole array reversed, then zeros below the diagonal
  a.reverse();
  for (let i = 1; i < n; i++) a.fill(0, i * n, i * n + i);
  return a;
}
