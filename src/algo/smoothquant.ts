// SmoothQuant (Xiao et al. 2022, https://arxiv.org/abs/2211.10438): migrate activation outliers into the weights
// with per-input-channel scales s_j = max|X_j|^α / max|W_{:,j}|^(1−α), where max|W_{:,j}| is taken over every
// Linear that reads the activation. The activation producer (an RMSNorm weight, or a Linear's output rows) is
// divided by s and the Linears' columns multiplied by s, so the model's function is unchanged while X/s has a
// flatter per-channel range. Clamps as mit-han-lab/smoothquant smooth_ln_fcs: both max|W| and s ≥ 1e-5.

import { ReasonedError, type MethodReason } from '../diag/failure.js';

/** a Linear weight [rows = out features, cols = in features], row-major */
export interface WeightMatrix {
  readonly data: Float32Array;
  readonly rows: number;
  readonly cols: number;
}

export const SMOOTHQUANT_MIN_SCALE = 1e-5;

/**
 * The range of α (`smoothing_strength`), the one rule for it: 0 leaves the activations as they are, 1 moves
 * all of their range into the weights. schema/stages/smoothquant.schema.json states the same bounds (a test
 * compares them), so a recipe is refused before any compute and a direct call here is refused alike.
 */
export const SMOOTHING_STRENGTH = { minimum: 0, maximum: 1 } as const;

export class SmoothingError extends ReasonedError<MethodReason> {}

/** max |W_{:,j}| over the rows of every weight, per input channel j */
export function columnAbsMax(weights: readonly WeightMatrix[]): Float32Array {
  const cols = weights[0]?.cols ?? 0;
  const out = new Float32Array(cols);
  for (const w of weights) {
    if (w.cols !== cols) throw new SmoothingError('smoothing-shape-mismatch', `balance weights have ${w.cols} and ${cols} input channels; expected all equal`);
    for (let r = 0; r < w.rows; r++) {
      const row = r * cols;
      for (let c = 0; c < cols; c++) {
        const v = Math.abs(w.data[row + c] as number);
        if (v > (out[c] as number)) out[c] = v;
      }
    }
  }
  return out;
}

/** the smoothing scales s_j = max|X_j|^α / max|W_j|^(1−α) for activation maxima `actMax` [in] */
export function smoothquantScales(actMax: Float32Array, weights: readonly WeightMatrix[], alpha: number): Float32Array {
  const { minimum, maximum } = SMOOTHING_STRENGTH;
  if (!(alpha >= minimum && alpha <= maximum)) {
    throw new SmoothingError('smoothing-strength-out-of-range', `smoothing_strength is ${alpha}; expected a number in [${minimum}, ${maximum}]`);
  }
  if (weights.length === 0) throw new SmoothingError('smoothing-shape-mismatch', 'no balance weights given; expected at least one');
  const wMax = columnAbsMax(weights);
  if (wMax.length !== actMax.length) {
    throw new SmoothingError('smoothing-shape-mismatch', `activation statistics have ${actMax.length} channels but the balance weights have ${wMax.length} input channels`);
  }
  const out = new Float32Array(actMax.length);
  for (let j = 0; j < out.length; j++) {
    const w = Math.max(wMax[j] as number, SMOOTHQUANT_MIN_SCALE);
    const s = Math.pow(actMax[j] as number, alpha) / Math.pow(w, 1 - alpha);
    out[j] = Math.max(s, SMOOTHQUANT_MIN_SCALE);
  }
  return out;
}

export interface ScaleSummary {
  min: number;
  max: number;
  mean: number;
}

export function summarizeScales(s: Float32Array): ScaleSummary {
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  for (const v of s) {
    min = Math.min(min, v);
    max = Math.max(max, v);
    sum += v;
  }
  return { min, max, mean: s.length === 0 ? 0 : sum / s.length };
}
