// GPTQ: accurate post-training quantization from second-order information (Frantar et al. 2022,
// https://arxiv.org/abs/2210.17323), with llm-compressor's semantics (modifiers/gptq/gptq_quantize.py).
// With H = 2XᵀX/n the Hessian of a Linear's output error, columns are quantized one by one; each column's
// error, scaled by the upper Cholesky factor U of H⁻¹, is pushed onto the columns not yet quantized. Columns go
// in blocks: inside a block the update is immediate, the remaining columns get one lazy update per block
// (W[:, i2:] −= Err·U[i1:i2, i2:], a Gemm in onnxruntime). Dead inputs (H_ii = 0) are zeroed; λ =
// dampening_frac · mean(diag H) is added to the diagonal, escalated ×10 when the Cholesky fails.
// Scales and zero points come from the weight's observer before the column pass (llm-compressor); actorder
// permutes columns by descending diag(H): `static` keeps the contiguous groups of the original columns,
// `group` forms groups along the permuted order and records weight_g_idx.

import type { FloatType } from '../ort/kernels/linalg.js';
import type { Runtime } from '../ort/session.js';
import { CholeskyError, inverseCholeskyUpper, type CholeskyOptions } from './cholesky.js';
import type { QuantizedWeight } from './fake-quant.js';
import { gptqColumns } from './gptq-columns.js';
import { observeWeight } from './observers.js';
import { columnGroups, computeQParams, effectiveScales, qparamShape, type QParams, type ScaleDtype } from '../quant/qparams.js';
import { elementOf } from '../quant/element.js';
import { weightGlobalScale } from './fake-quant.js';
import type { ActOrder, QuantArgs } from '../quant/scheme.js';
import { ReasonedError, type MethodReason } from '../diag/failure.js';

export class GptqError extends ReasonedError<MethodReason> {}

export interface GptqOptions {
  readonly runtime: Runtime;
  readonly blockSize: number;
  readonly dampeningFrac: number;
  /** the act order in effect for this module (see resolveActOrder) */
  readonly actorder: ActOrder | null;
  /** names the module in errors */
  readonly name?: string;
  /** columns solved in JavaScript between onnxruntime updates inside a block (results do not depend on it) */
  readonly subBlock?: number;
  /**
   * arithmetic of the column pass (weights, errors, lazy updates); the inverse Hessian factor is always
   * computed in float64. float32 is llm-compressor's GPTQ_PRECISION and twice as fast in onnxruntime.
   */
  readonly precision?: FloatType;
  /** a coarser block level above block_size, so the lazy updates pass over W fewer times (results do not depend on it) */
  readonly superBlock?: number;
  /**
   * false: only the requested dampening is tried, and a singular Hessian fails with `gptq-singular-hessian`
   * instead of escalating (and at worst falling back to round-to-nearest); default true
   */
  readonly escalate?: boolean;
  /** NVFP4: the global scale to quantize with (shared by fused Linears); default the weight's own */
  readonly globalScale?: number;
  /** the dtype the checkpoint stores the scales in (the weight's); default float32 */
  readonly scaleDtype?: ScaleDtype;
  /** dampening tries after the requested one fails; each multiplies the fraction by 10, from `escalateFrom` */
  readonly maxEscalations?: number;
  readonly escalateFrom?: number;
  readonly cholesky?: CholeskyOptions;
}

export interface GptqDampening {
  /** the fraction of mean(diag H) that made H positive definite; null when every try failed */
  readonly frac: number | null;
  /** the absolute value added to the diagonal */
  readonly value: number;
  /** fractions tried, in order (the last one worked unless fallback) */
  readonly tried: readonly number[];
  /** every try failed: U = I, so the columns were rounded to nearest with the observer's qparams */
  readonly fallback: boolean;
}

/** the quantized weight (gIdx only for actorder group), and how the solve went */
export interface GptqResult extends QuantizedWeight {
  /** GPTQ's own loss Σ (w − q)² / U_ii² / 2 */
  readonly loss: number;
  readonly dampening: GptqDampening;
  readonly deadColumns: number;
  readonly timing: { readonly inverseMs: number; readonly solveMs: number };
}

/**
 * The act order a module is solved with, as llm-compressor's GPTQModifier resolves it: the stage's value
 * (default `static`) applies when the scheme leaves actorder unset; a scheme's own actorder wins. `group`
 * needs strategy group and falls back to none otherwise. `recorded` is what the quantization args keep:
 * static on non-group strategies changes only the solve order, so it is not written.
 */
export function resolveActOrder(stage: ActOrder | null, args: Pick<QuantArgs, 'actorder' | 'strategy'>): { actorder: ActOrder | null; recorded: ActOrder | null; warning?: string } {
  let actorder = args.actorder ?? stage;
  let warning: string | undefined;
  if (args.actorder !== null && stage !== null && stage !== args.actorder && stage !== 'static') {
    warning = `actorder "${stage}" of the stage differs from the scheme's "${args.actorder}"; using the scheme's`;
  }
  if (actorder === 'group' && args.strategy !== 'group') {
    warning = `actorder "group" needs strategy "group", found "${args.strategy}"; solving without act order`;
    actorder = null;
  }
  return { actorder, recorded: args.strategy === 'group' ? actorder : null, ...(warning ? { warning } : {}) };
}

function checkHessian(h: Float64Array, n: number, name: string): void {
  if (h.length !== n * n) throw new GptqError('gptq-shape-mismatch', `${name}: Hessian has ${h.length} values but [${n}, ${n}] needs ${n * n}`);
  let bad = 0;
  for (let i = 0; i < h.length; i++) if (!Number.isFinite(h[i] as number)) bad++;
  if (bad > 0) throw new GptqError('gptq-non-finite-input', `${name}: the Hessian has ${bad} NaN or infinite entries (NaN/Inf in the calibration activations?); expected finite values`);
}

/** `hessianChecked`: gptqFactor checks the Hessian (once for every Linear sharing it) */
export function checkInputs(w: Float32Array, rows: number, cols: number, h: Float64Array, args: QuantArgs, o: GptqOptions, hessianChecked = false): void {
  const name = o.name ?? 'weight';
  if (w.length !== rows * cols) throw new GptqError('gptq-shape-mismatch', `${name}: weight has ${w.length} values but [${rows}, ${cols}] needs ${rows * cols}`);
  if (args.strategy === 'token') throw new GptqError('gptq-unsupported-args', `${name}: strategy "token" is for activations; GPTQ quantizes weights with tensor, channel or group`);
  if (!Number.isInteger(o.blockSize) || o.blockSize < 1) throw new GptqError('gptq-unsupported-args', `${name}: block_size ${o.blockSize} must be a positive integer`);
  if (!(o.dampeningFrac >= 0)) throw new GptqError('gptq-unsupported-args', `${name}: dampening_frac ${o.dampeningFrac} must be a number ≥ 0`);
  const bad = (a: ArrayLike<number>): number => {
    let c = 0;
    for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i] as number)) c++;
    return c;
  };
  const bw = bad(w);
  if (bw > 0) throw new GptqError('gptq-non-finite-input', `${name}: the weight has ${bw} NaN or infinite values; expected finite weights`);
  if (!hessianChecked) checkHessian(h, cols, name);
}

/** columns in descending diag(H) order, ties by index (a stable argsort) */
export function actOrderPermutation(h: Float64Array, n: number): Int32Array {
  const idx = Array.from({ length: n }, (_, i) => i);
  idx.sort((a, b) => (h[b * n + b] as number) - (h[a * n + a] as number) || a - b);
  return Int32Array.from(idx);
}

/** dampening fractions to try: the requested one, then ×10 steps above it from `from` */
function dampeningLadder(frac: number, from: number, steps: number): number[] {
  const out = [frac];
  for (let k = 0, v = from; k < steps; k++, v *= 10) if (v > frac) out.push(v);
  return out;
}

export interface Prepared {
  /** solve column j is original column order[j] */
  order: Int32Array;
  /** inputs with H_ii = 0, by original column */
  dead: Uint8Array;
  /** H's diagonal with dead inputs set to 1 */
  diagonal: Float64Array;
  meanDiag: number;
}

export function prepare(h: Float64Array, n: number, actorder: ActOrder | null): Prepared {
  const order = actorder ? actOrderPermutation(h, n) : Int32Array.from({ length: n }, (_, i) => i);
  const dead = new Uint8Array(n);
  const diagonal = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const v = h[i * n + i] as number;
    dead[i] = v === 0 ? 1 : 0;
    diagonal[i] = v === 0 ? 1 : v;
    sum += diagonal[i] as number;
  }
  return { order, dead, diagonal, meanDiag: n > 0 ? sum / n : 0 };
}

/** a Hessian the factorisation may overwrite (U written into it): `restore` writes it back after a failed try */
export interface Overwritable {
  restore(h: Float64Array): Promise<void>;
}

/** U for the first dampening that factorises; with `overwrite`, U is h's own buffer (h restored after each failure) */
export async function invert(h: Float64Array, p: Prepared, n: number, o: GptqOptions, overwrite?: Overwritable): Promise<{ u: Float64Array; dampening: GptqDampening }> {
  const tried: number[] = [];
  const escalate = o.escalate ?? true;
  let lost = false;
  for (const frac of escalate ? dampeningLadder(o.dampeningFrac, o.escalateFrom ?? 1e-6, o.maxEscalations ?? 7) : [o.dampeningFrac]) {
    tried.push(frac);
    if (lost) await (overwrite as Overwritable).restore(h);
    try {
      const value = frac * p.meanDiag;
      lost = overwrite !== undefined;
      const u = await inverseCholeskyUpper(o.runtime, h, n, { ...o.cholesky, damp: value, order: p.order, diagonal: p.diagonal, inPlace: lost });
      return { u, dampening: { frac, value, tried, fallback: false } };
    } catch (e) {
      if (!(e instanceof CholeskyError)) throw e;
      if (!escalate) {
        throw new GptqError('gptq-singular-hessian', `${o.name ?? 'weight'}: the Hessian is singular with dampening_frac ${frac} (${e.message}) and dampening escalation is off`);
      }
    }
  }
  if (lost) await (overwrite as Overwritable).restore(h);
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) u[i * n + i] = 1;
  return { u, dampening: { frac: null, value: 0, tried, fallback: true } };
}

/**
 * What GPTQ derives from a Hessian alone: the solve order, dead inputs, and the damped inverse factor U. Linears
 * that read the same input (q/k/v, gate/up) share one, so it is computed once per input and act order.
 */
export interface GptqFactor {
  readonly prepared: Prepared;
  readonly u: Float64Array;
  readonly dampening: GptqDampening;
  readonly ms: number;
}

/**
 * the solve order and inverse factor of Hessian `h` [n, n] under `actorder`, with dampening escalation per `o`;
 * with `overwrite`, U is written into h's buffer (`u === h`: one n² matrix instead of two) unless every dampening
 * failed, when h is H again and U a new identity
 */
export async function gptqFactor(h: Float64Array, n: number, actorder: ActOrder | null, o: Omit<GptqOptions, 'actorder'>, overwrite?: Overwritable): Promise<GptqFactor> {
  const t0 = performance.now();
  checkHessian(h, n, o.name ?? 'weight');
  const prepared = prepare(h, n, actorder);
  const { u, dampening } = await invert(h, prepared, n, { ...o, actorder }, overwrite);
  return { prepared, u, dampening, ms: performance.now() - t0 };
}

/**
 * quantize `w` [rows, cols] with GPTQ given its Hessian `h` [cols, cols] (float64, e.g. 2XᵀX/n); `factor`, when
 * given, is gptqFactor(h, cols, o.actorder, o) computed before (for another Linear of the same input)
 */
export async function gptqQuantize(w: Float32Array, rows: number, cols: number, h: Float64Array, args: QuantArgs, o: GptqOptions, factor?: GptqFactor): Promise<GptqResult> {
  checkInputs(w, rows, cols, h, args, o, true);
  const n = cols;
  const t0 = performance.now();
  const f = factor ?? (await gptqFactor(h, n, o.actorder, o));
  const { order } = f.prepared;

  // qparams from the observer: on the original columns, or along the solve order for actorder group
  const permuted = o.actorder === 'group';
  const observed = permuted ? permuteColumns(w, rows, n, order) : w;
  const { min, max } = await observeWeight(observed, rows, n, args, { runtime: o.runtime });
  const qp = computeQParams(min, max, args, o.globalScale ?? weightGlobalScale(w, args), o.scaleDtype);
  const scaleDims = qparamShape(rows, n, args);
  // the scale column of each solve column: along the solve order for actorder group, else the original column's
  const groups = columnGroups(n, args);
  const groupOf = Int32Array.from({ length: n }, (_, j) => (permuted ? Math.floor(j / (args.group_size as number)) : (groups[order[j] as number] as number)));

  const t1 = performance.now();
  const element = elementOf(args);
  const { scale, zeroPoint } = rowScales(qp, args, rows, scaleDims);
  const problem = {
    rows, cols, order, dead: f.prepared.dead, groupOf, scale, zeroPoint, groups: scaleDims[1], tensorWide: args.strategy === 'tensor',
    qmin: element.qmin, qmax: element.qmax, ...(element.kind === 'int' ? {} : { element }), u: f.u,
  };
  const pass = await gptqColumns(w, problem, o);
  let gIdx: Int32Array | undefined;
  if (permuted) {
    gIdx = new Int32Array(n);
    for (let j = 0; j < n; j++) gIdx[order[j] as number] = groupOf[j] as number;
  }
  return {
    codes: pass.codes,
    scale: qp.scale,
    zeroPoint: qp.zeroPoint,
    scaleDims,
    dequantized: pass.dequantized,
    ...(gIdx ? { gIdx } : {}),
    ...(qp.globalScale === undefined ? {} : { globalScale: qp.globalScale }),
    loss: pass.loss,
    dampening: f.dampening,
    deadColumns: f.prepared.dead.reduce((a, b) => a + b, 0),
    timing: { inverseMs: t1 - t0, solveMs: performance.now() - t1 },
  };
}

/**
 * tr(D·H·Dᵀ) for GPTQ's D = W − Q from its own solve, without another pass over H: the column pass ends with
 * W − Q = E·U (E the scaled errors it summed into its loss, U the factor of the damped H_λ = H + λI with dead
 * inputs' diagonal 1), so tr(D·H_λ·Dᵀ) = ΣE² = 2·loss and tr(D·H·Dᵀ) = 2·loss − λ‖D‖² over the live inputs (dead
 * inputs' rows and columns of H are 0, and so is D there once they are zeroed). Equal to the quadratic form up to
 * the float32 rounding of the column pass: ~5e-9 relative on 288–2048-row weights. Undefined when the solve fell
 * back to round-to-nearest (U = I is no factor of H). `dead` (the factor's, H_ii = 0) is read instead of h's diagonal
 * when given, so h may already hold U.
 */
export function gptqOutputError(w: Float32Array, rows: number, cols: number, h: Float64Array, solved: Float32Array, r: Pick<GptqResult, 'loss' | 'dampening'>, dead?: Uint8Array): number | undefined {
  if (r.dampening.fallback) return undefined;
  const live = Uint8Array.from({ length: cols }, (_, c) => (dead ? 1 - (dead[c] as number) : h[c * cols + c] === 0 ? 0 : 1));
  let dd = 0;
  for (let i = 0, c = 0; i < rows * cols; i++, c = c + 1 === cols ? 0 : c + 1) if (live[c]) dd += ((w[i] as number) - (solved[i] as number)) ** 2;
  return 2 * r.loss - r.dampening.value * dd;
}

/** what each row divides by, [rows or 1, groups]: NVFP4 scales over the global scale, weight blocks per row */
function rowScales(qp: QParams, args: QuantArgs, rows: number, dims: readonly [number, number]): { scale: Float32Array; zeroPoint: Int8Array } {
  const effective = effectiveScales(qp);
  if (args.strategy !== 'block') return { scale: effective, zeroPoint: qp.zeroPoint };
  const per = (args.block_structure as readonly number[])[0] as number;
  const G = dims[1];
  const scale = new Float32Array(rows * G);
  for (let r = 0; r < rows; r++) scale.set(effective.subarray(Math.floor(r / per) * G, Math.floor(r / per) * G + G), r * G);
  return { scale, zeroPoint: new Int8Array(rows * G) };
}

function permuteColumns(w: Float32Array, rows: number, cols: number, order: Int32Array): Float32Array {
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) out[r * cols + j] = w[r * cols + (order[j] as number)] as number;
  return out;
}
