// AWQ (Lin et al. 2023, https://arxiv.org/abs/2306.00978): protect the weight channels that see large
// activations by scaling them up before quantization. Per mapping, candidate per-input-channel scales come
// from the mean |X| per channel (and, with duo scaling, the mean normalised |W|): s = x̄^r or x̄^r / w̄^(1−r),
// normalised by sqrt(max(s)·min(s)); each candidate's loss is the parent module's output MSE with the balance
// weights replaced by Q(W·s)/s; the best is folded (smooth op ÷ s, balance columns × s) before quantizing.
// Grid and clamps follow llm-compressor 0.9 AWQModifier (ratio = i / n_grid, i < n_grid; "both" searches
// floor(n_grid / 2) ratios with each family) and llm-awq auto_scale.py; with duo scaling the identity scales
// are searched too (as later llm-compressor releases do), so AWQ never loses to plain rounding on its objective.

import type { QuantArgs } from '../quant/scheme.js';
import type { WeightMatrix } from './smoothquant.js';
import { ReasonedError, type MethodReason } from '../diag/failure.js';

export type DuoScaling = boolean | 'both';

/** one grid point: ratio r and whether w̄ enters the scales; r = 0 without duo is the identity */
export interface AwqCandidate {
  readonly ratio: number;
  readonly duo: boolean;
}

export class AwqError extends ReasonedError<MethodReason> {}

const SCALE_MIN = 1e-4;
const W_MEAN_EPS = 1e-4;
const NORMALISE_EPS = 1e-6;

/** the candidates searched for `duo_scaling` with `n_grid` points, in search order */
export function awqGrid(duo: DuoScaling, nGrid: number): AwqCandidate[] {
  if (!Number.isInteger(nGrid) || nGrid < 1) throw new AwqError('awq-bad-grid', `n_grid is ${nGrid}; expected an integer ≥ 1`);
  if (duo === 'both') {
    const n = Math.max(1, Math.floor(nGrid / 2));
    return Array.from({ length: n }, (_, i) => [{ ratio: i / n, duo: false }, { ratio: i / n, duo: true }]).flat();
  }
  const grid = Array.from({ length: nGrid }, (_, i) => ({ ratio: i / nGrid, duo }));
  return duo ? [{ ratio: 0, duo: false }, ...grid] : grid;
}

export const isIdentity = (c: AwqCandidate): boolean => c.ratio === 0 && !c.duo;

/** a balance weight with the args its scales are computed with (the chunks w̄ normalises over) */
export interface BalanceWeight {
  readonly weight: WeightMatrix;
  readonly args: Pick<QuantArgs, 'strategy' | 'group_size'>;
}

/**
 * w̄: per input channel, the mean over every balance row of |W| / (max |W| of its quantization chunk + 1e-6);
 * chunks are groups (a partial last group included), rows (channel) or the whole tensor.
 */
export function weightMeans(layers: readonly BalanceWeight[]): Float32Array {
  const cols = layers[0]?.weight.cols ?? 0;
  const sum = new Float64Array(cols);
  let count = 0;
  for (const { weight: w, args } of layers) {
    if (w.cols !== cols) throw new AwqError('awq-shape-mismatch', `balance weights have ${w.cols} and ${cols} input channels; expected all equal`);
    const width = args.strategy === 'group' ? (args.group_size as number) : cols;
    let tensorMax = 0;
    if (args.strategy === 'tensor') for (const v of w.data) tensorMax = Math.max(tensorMax, Math.abs(v));
    for (let r = 0; r < w.rows; r++) {
      const row = r * cols;
      for (let c0 = 0; c0 < cols; c0 += width) {
        const c1 = Math.min(cols, c0 + width);
        let max = tensorMax;
        if (args.strategy !== 'tensor') for (let c = c0; c < c1; c++) max = Math.max(max, Math.abs(w.data[row + c] as number));
        const d = max + NORMALISE_EPS;
        for (let c = c0; c < c1; c++) sum[c] = (sum[c] as number) + Math.abs(w.data[row + c] as number) / d;
      }
    }
    count += w.rows;
  }
  return Float32Array.from(sum, (s) => s / count);
}

/** the scales of candidate `c`: clamped, normalised by sqrt(max·min), non-finite entries set to 1 */
export function candidateScales(xMean: Float32Array, wMean: Float32Array | undefined, c: AwqCandidate): Float32Array {
  if (c.duo && (wMean === undefined || wMean.length !== xMean.length)) {
    throw new AwqError('awq-shape-mismatch', `duo scaling needs weight means for ${xMean.length} channels, got ${wMean?.length ?? 'none'}`);
  }
  const s = new Float64Array(xMean.length);
  let max = -Infinity;
  let min = Infinity;
  for (let j = 0; j < s.length; j++) {
    const x = Math.pow(xMean[j] as number, c.ratio);
    const v = c.duo ? Math.max(x / (Math.pow(wMean![j] as number, 1 - c.ratio) + W_MEAN_EPS), SCALE_MIN) : Math.max(x, SCALE_MIN);
    s[j] = v;
    max = Math.max(max, v);
    min = Math.min(min, v);
  }
  const norm = Math.sqrt(max * min);
  return Float32Array.from(s, (v) => {
    const out = v / norm;
    return Number.isFinite(out) ? out : 1;
  });
}

export interface AwqSearchProblem {
  readonly xMean: Float32Array;
  /** needed when a candidate uses duo scaling */
  readonly wMean?: Float32Array;
  readonly candidates: readonly AwqCandidate[];
  /** the loss (any monotone error measure) of each of `count` candidates' scales, laid out [count, channels] */
  losses(scales: Float32Array, count: number): Promise<Float64Array>;
}

export interface AwqSearchResult {
  best: AwqCandidate;
  scales: Float32Array;
  loss: number;
  /** the loss with s = 1 (plain rounding), when the grid holds it */
  identityLoss: number | undefined;
  losses: number[];
}

/** every candidate's scales, laid out [candidates, channels] (what `losses` is handed) */
export function candidateMatrix(p: Pick<AwqSearchProblem, 'xMean' | 'wMean' | 'candidates'>): Float32Array {
  const n = p.xMean.length;
  const all = new Float32Array(p.candidates.length * n);
  p.candidates.forEach((c, k) => all.set(candidateScales(p.xMean, p.wMean, c), k * n));
  return all;
}

/** evaluate every candidate and keep the first with the lowest finite loss */
export async function awqSearch(p: AwqSearchProblem): Promise<AwqSearchResult> {
  const n = p.xMean.length;
  const K = p.candidates.length;
  const all = candidateMatrix(p);
  const losses = Array.from(await p.losses(all, K));
  let best = -1;
  for (let k = 0; k < K; k++) {
    const l = losses[k] as number;
    if (Number.isFinite(l) && (best < 0 || l < (losses[best] as number))) best = k;
  }
  if (best < 0) throw new AwqError('awq-no-finite-loss', `no candidate scale gave a finite loss (losses ${losses.join(', ')}); the parent module produces NaN or Inf`);
  const identity = p.candidates.findIndex(isIdentity);
  return {
    best: p.candidates[best] as AwqCandidate,
    scales: all.slice(best * n, (best + 1) * n),
    loss: losses[best] as number,
    identityLoss: identity < 0 ? undefined : losses[identity],
    losses,
  };
}
