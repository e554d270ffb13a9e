// Weight observers: the min/max each scale is computed from.
// Source: llm-compressor observers/min_max.py and observers/mse.py + mse_quant.py (_grid_search_mse).
//
// minmax takes each slice's plain min and max. mse shrinks them: for i = 0, 1, … < maxshrink·grid it
// tries p = 1 − i/grid, quantizes the slice with qparams from (p·min, p·max), scores the error
// Σ|fq(x) − x|^norm, and keeps per slice the first p with the lowest score; after `patience` steps in
// a row in which no slice improved, it stops (defaults maxshrink 0.2, patience 5, grid 100, norm 2.4).
// The candidates' errors are evaluated in onnxruntime (ort/kernels/quant.ts); the scan stays here.

import { shrinkErrors, type ShrinkProblem } from '../ort/kernels/quant.js';
import type { Runtime } from '../ort/session.js';
import { computeQParams, qparamShape, qRange, weightMinMax, type MinMax } from '../quant/qparams.js';
import { roundHalfEven } from '../quant/round.js';
import type { JsonScalar, QuantArgs } from '../quant/scheme.js';
import { observerKind } from '../quant/quant-args.js';
import { ReasonedError, type QuantReason } from '../diag/failure.js';

const f = Math.fround;
const FLT_MAX = 3.4028234663852886e38;
/** above this many weight values the mse observer refuses to run without onnxruntime */
export const JS_MSE_LIMIT = 1 << 16;

export type WeightObserverArgs = Pick<QuantArgs, 'num_bits' | 'symmetric' | 'strategy' | 'group_size' | 'observer' | 'observer_kwargs'> &
  Partial<Pick<QuantArgs, 'type' | 'block_structure'>>;

export interface MseOptions {
  readonly maxshrink: number;
  readonly patience: number;
  readonly grid: number;
  readonly norm: number;
  /** widen the observed range by this factor before shrinking (llm-compressor `expand`) */
  readonly expand: number;
}

export class ObserverError extends ReasonedError<QuantReason> {}

function numberKwarg(kwargs: Readonly<Record<string, JsonScalar>>, key: string, fallback: number): number {
  const v = kwargs[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new ObserverError('invalid-observer-kwargs', `observer_kwargs.${key} is ${JSON.stringify(v)}; expected a finite number`);
  }
  return v;
}

/** the mse observer's options from observer_kwargs, llm-compressor's defaults for the rest */
export function mseOptions(kwargs: Readonly<Record<string, JsonScalar>> = {}): MseOptions {
  const o = {
    maxshrink: numberKwarg(kwargs, 'maxshrink', 0.2),
    patience: numberKwarg(kwargs, 'patience', 5),
    grid: numberKwarg(kwargs, 'grid', 100),
    norm: numberKwarg(kwargs, 'norm', 2.4),
    expand: numberKwarg(kwargs, 'expand', 1),
  };
  if (o.grid <= 0 || o.maxshrink < 0 || o.patience < 1 || o.expand < 1) {
    throw new ObserverError('invalid-observer-kwargs', `observer_kwargs ${JSON.stringify(o)} out of range; expected grid > 0, maxshrink ≥ 0, patience ≥ 1, expand ≥ 1`);
  }
  return o;
}

/** `w` [rows, cols] laid out as [rows, groups, width] slices, the last group zero-padded */
export function shrinkProblem(w: Float32Array, rows: number, cols: number, args: WeightObserverArgs, norm: number): ShrinkProblem {
  const groups = args.strategy === 'group' ? qparamShape(rows, cols, args)[1] : 1;
  const width = args.strategy === 'group' ? (args.group_size as number) : cols;
  const { qmin, qmax } = qRange(args.num_bits);
  if (groups * width === cols) return { w, rows, groups, width, qmin, qmax, norm };
  const padded = new Float32Array(rows * groups * width);
  for (let r = 0; r < rows; r++) padded.set(w.subarray(r * cols, (r + 1) * cols), r * groups * width);
  return { w: padded, rows, groups, width, qmin, qmax, norm };
}

/** the reference evaluator: errors [count, rows, groups] of the candidate qparams, in JS */
export function shrinkErrorsJs(p: ShrinkProblem, scale: Float32Array, zeroPoint: Float32Array, count: number): Float32Array {
  const slices = p.rows * p.groups;
  const err = new Float32Array(count * slices);
  for (let c = 0; c < count; c++) {
    for (let k = 0; k < slices; k++) {
      const s = scale[c * slices + k] as number;
      const z = zeroPoint[c * slices + k] as number;
      let sum = 0;
      for (let e = 0; e < p.width; e++) {
        const x = p.w[k * p.width + e] as number;
        const q = roundHalfEven(Math.min(Math.max(f(f(x / s) + z), p.qmin), p.qmax));
        sum += Math.abs(f(f((q - z) * s) - x)) ** p.norm;
      }
      err[c * slices + k] = sum;
    }
  }
  return err;
}

export interface ObserveOptions {
  /** evaluates the mse observer's candidates; required above JS_MSE_LIMIT weight values */
  readonly runtime?: Runtime;
  /** shrink candidates evaluated per onnxruntime call (the scan stays step by step) */
  readonly chunk?: number;
}

/** min/max minimising the quantization error over shrunk ranges (llm-compressor's MSE observer) */
export async function mseMinMax(w: Float32Array, rows: number, cols: number, args: WeightObserverArgs, options: ObserveOptions = {}): Promise<MinMax> {
  const o = mseOptions(args.observer_kwargs);
  if (args.type === 'float') {
    throw new ObserverError('unsupported-quant-args', `the mse observer searches integer grids; ${args.num_bits}-bit float weights take the minmax observer`);
  }
  if (options.runtime === undefined && w.length > JS_MSE_LIMIT) {
    throw new ObserverError('mse-needs-runtime', `the mse observer on [${rows}, ${cols}] needs an onnxruntime Runtime; JS evaluation is limited to ${JS_MSE_LIMIT} values`);
  }
  const observed = weightMinMax(w, rows, cols, args);
  const n = observed.min.length;
  const absMin = observed.min.map((v) => f(v * o.expand));
  const absMax = observed.max.map((v) => f(v * o.expand));
  const bestMin = Float32Array.from(absMin);
  const bestMax = Float32Array.from(absMax);
  const bestErr = new Float64Array(n).fill(FLT_MAX);
  const problem = shrinkProblem(w, rows, cols, args, o.norm);
  const slices = problem.rows * problem.groups;
  // tensor strategy: one scale, errors per row summed here
  const perRow = n === 1 && slices > 1;
  const totalSteps = Math.trunc(o.maxshrink * o.grid);
  const chunk = Math.max(1, options.chunk ?? 5);
  let noImprove = 0;
  for (let start = 0; start < totalSteps; start += chunk) {
    const count = Math.min(chunk, totalSteps - start);
    const cmin = new Float32Array(count * n);
    const cmax = new Float32Array(count * n);
    for (let c = 0; c < count; c++) {
      const p = f(1 - (start + c) / o.grid);
      for (let k = 0; k < n; k++) {
        cmin[c * n + k] = f((absMin[k] as number) * p);
        cmax[c * n + k] = f((absMax[k] as number) * p);
      }
    }
    const qp = computeQParams(cmin, cmax, args);
    const scale = perRow ? new Float32Array(count * slices) : qp.scale;
    const zp = new Float32Array(count * slices);
    for (let c = 0; c < count; c++) {
      for (let k = 0; k < slices; k++) {
        const src = perRow ? c : c * slices + k;
        scale[c * slices + k] = qp.scale[src] as number;
        zp[c * slices + k] = qp.zeroPoint[src] as number;
      }
    }
    const err = options.runtime ? await shrinkErrors(options.runtime, problem, scale, zp, count) : shrinkErrorsJs(problem, scale, zp, count);
    for (let c = 0; c < count; c++) {
      let improved = false;
      for (let k = 0; k < n; k++) {
        let e = 0;
        if (perRow) for (let r = 0; r < slices; r++) e += err[c * slices + r] as number;
        else e = err[c * n + k] as number;
        if (e < (bestErr[k] as number)) {
          bestErr[k] = e;
          bestMin[k] = cmin[c * n + k] as number;
          bestMax[k] = cmax[c * n + k] as number;
          improved = true;
        }
      }
      noImprove = improved ? 0 : noImprove + 1;
      if (noImprove >= o.patience) return { min: bestMin, max: bestMax };
    }
  }
  return { min: bestMin, max: bestMax };
}

/** the min/max of each scale's slice of `w` as the args' observer sees it */
export async function observeWeight(w: Float32Array, rows: number, cols: number, args: WeightObserverArgs, options: ObserveOptions = {}): Promise<MinMax> {
  return observerKind(args.observer) === 'mse' ? mseMinMax(w, rows, cols, args, options) : weightMinMax(w, rows, cols, args);
}
