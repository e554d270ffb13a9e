// AutoRound (SignRound, Cheng et al. 2023, arXiv:2309.05516) outside the graph: the optimiser, schedule,
// minibatch sampler and best-iterate bookkeeping of intel/auto-round's quant_block, and the final codes and
// qparams of a weight from its learned offsets V and min/max factors.
// Source: auto-round sign_round/quantizer.py (LinearLR 1 → 0 over iters, best loss kept before each step),
// sign_sgd.py (p −= lr · sign(grad)), compressors/utils.py (IndexSampler), wrapper.py (factors in [0, 1]).
//
// The loss and gradients come from one onnxruntime session (graphs/autoround-kernel.ts); everything here is
// O(parameters) per iteration. Final quantization uses compressed-tensors' arithmetic (quant/qparams.ts), so
// V = 0 with factors 1 gives exactly the round-to-nearest codes.

import { seededRandom } from '../random.js';
import { rowStride, type QuantLayout, type TargetGrads, type TargetParams } from './autoround-layout.js';
import { computeQParams, dequantizeWeight, qparamShape, qRange, type MinMax, type QParams, type QuantArithArgs, type ScaleDtype } from '../quant/qparams.js';
import { roundHalfEven } from '../quant/round.js';

const f = Math.fround;

/** bounds auto-round keeps its parameters in: |V| ≤ 0.5, factors in [0, 1] */
export const V_BOUND = 0.5;
export const SCALE_BOUNDS = [0, 1] as const;

/** the learning rate of step `iter` (0-based): torch LinearLR from 1 to 0 over `iters` steps */
export function linearLr(lr: number, iter: number, iters: number): number {
  return iters <= 0 ? lr : lr * (1 - Math.min(iter, iters) / iters);
}

/** signSGD in place: p −= lr · sign(grad), then clamp p to [lo, hi] (float32 values); zero or NaN gradients leave p */
export function signSgdStep(p: Float32Array, grad: Float32Array, lr: number, lo: number, hi: number): void {
  if (p.length !== grad.length) throw new Error(`signSgdStep: ${p.length} parameters but ${grad.length} gradients`);
  // the sign comes from the gradient's sign bit as ±1 arithmetic, not a branch: the signs are a coin toss, which
  // a branch mispredicts half the time (~2× the loop's time); zero and NaN (|bits| 0 or above +inf's) are rare
  const bits = new Int32Array(grad.buffer, grad.byteOffset, grad.length);
  // the bounds are float32 values, so clamping before the store's rounding equals clamping after it
  for (let i = 0; i < p.length; i++) {
    const b = bits[i] as number;
    const magnitude = b & 0x7fffffff;
    if (magnitude === 0 || magnitude > 0x7f800000) continue;
    const x = (p[i] as number) - lr * (1 - 2 * (b >>> 31));
    p[i] = x < lo ? lo : x > hi ? hi : x;
  }
}

/** a block's stream of random numbers from the stage seed, different for every layer */
export function blockRandom(seed: number, layer: number): () => number {
  return seededRandom((seed ^ Math.imul(layer + 1, 0x9e3779b9)) >>> 0);
}

/**
 * auto-round's IndexSampler: a shuffled order of the samples, cut into consecutive batches; when fewer than
 * a batch remain, reshuffle and start over (the ragged tail is skipped).
 */
export class IndexSampler {
  readonly #order: number[];
  readonly #batch: number;
  readonly #random: () => number;
  #next = 0;

  constructor(nsamples: number, batchSize: number, random: () => number) {
    if (!Number.isInteger(nsamples) || nsamples < 1) throw new Error(`IndexSampler: nsamples ${nsamples}; expected a positive integer`);
    this.#batch = Math.min(Math.max(1, batchSize), nsamples);
    this.#random = random;
    this.#order = Array.from({ length: nsamples }, (_, i) => i);
    this.#shuffle();
  }

  #shuffle(): void {
    const o = this.#order;
    for (let i = o.length - 1; i > 0; i--) {
      const j = Math.floor(this.#random() * (i + 1));
      [o[i], o[j]] = [o[j] as number, o[i] as number];
    }
  }

  get batchSize(): number {
    return this.#batch;
  }

  next(): number[] {
    if (this.#next + this.#batch > this.#order.length) {
      this.#shuffle();
      this.#next = 0;
    }
    const batch = this.#order.slice(this.#next, this.#next + this.#batch);
    this.#next += this.#batch;
    return batch;
  }
}

/** g · weight in place (as 0 + weight · g: addScaledGrads' first part into fresh zeros, without the fresh arrays) */
export function scaleGrads(g: Record<string, TargetGrads>, weight: number): Record<string, TargetGrads> {
  const scale = (a: Float32Array | undefined): void => {
    if (a) for (let i = 0; i < a.length; i++) a[i] = 0 + weight * (a[i] as number);
  };
  for (const gl of Object.values(g)) [gl.v, gl.minScale, gl.maxScale].forEach(scale);
  return g;
}

/** acc + weight · g per target and tensor, into acc's arrays (new ones where acc has none) */
export function addScaledGrads(acc: Record<string, TargetGrads>, g: Record<string, TargetGrads>, weight: number): Record<string, TargetGrads> {
  const add = (a: Float32Array | undefined, b: Float32Array): Float32Array => {
    const out = a ?? new Float32Array(b.length);
    for (let i = 0; i < b.length; i++) out[i] = (out[i] as number) + weight * (b[i] as number);
    return out;
  };
  for (const [local, gl] of Object.entries(g)) {
    const al = acc[local];
    acc[local] = {
      v: add(al?.v, gl.v),
      ...(gl.minScale ? { minScale: add(al?.minScale, gl.minScale) } : {}),
      ...(gl.maxScale ? { maxScale: add(al?.maxScale, gl.maxScale) } : {}),
    };
  }
  return acc;
}

/** the lowest loss seen and a snapshot of the parameters it was measured at */
export class BestTracker<T> {
  loss = Infinity;
  iter = -1;
  params: T | undefined;

  /** record `loss` of iteration `iter`; snapshots only on improvement; returns whether it improved */
  observe(iter: number, loss: number, snapshot: () => T): boolean {
    if (!(loss < this.loss)) return false;
    this.loss = loss;
    this.iter = iter;
    this.params = snapshot();
    return true;
  }
}

/** at most `max` evenly spaced [iteration, loss] points of a loss curve, the first and last included */
export function sampleCurve(losses: readonly number[], max = 200): [number, number][] {
  const n = losses.length;
  if (n <= max) return losses.map((l, i) => [i, l]);
  const out: [number, number][] = [];
  for (let k = 0; k < max; k++) {
    const i = Math.round((k * (n - 1)) / (max - 1));
    out.push([i, losses[i] as number]);
  }
  return out;
}

/** V = 0 and both factors 1: the round-to-nearest starting point */
export function initialParams(l: QuantLayout): TargetParams {
  return { v: new Float32Array(l.R * l.G * l.S), minScale: new Float32Array(l.R * l.G).fill(1), maxScale: new Float32Array(l.R * l.G).fill(1) };
}

/** a copy of p, written into `into`'s arrays when given (a kept snapshot reused instead of a new one per improvement) */
export function copyParams(p: TargetParams, into?: TargetParams): TargetParams {
  if (!into) return { v: p.v.slice(), minScale: p.minScale.slice(), maxScale: p.maxScale.slice() };
  into.v.set(p.v);
  into.minScale.set(p.minScale);
  into.maxScale.set(p.maxScale);
  return into;
}

/** the observed range widened to include 0, as the graph is fed it */
export function widenedRange(mm: MinMax): { min: Float32Array; max: Float32Array } {
  return { min: mm.min.map((x) => Math.min(x, 0)), max: mm.max.map((x) => Math.max(x, 0)) };
}

/** scales and zero points from the observed range shrunk by the learned factors */
export function learnedQParams(range: MinMax, p: Pick<TargetParams, 'minScale' | 'maxScale'>, args: QuantArithArgs, scaleDtype?: ScaleDtype): QParams {
  const lo = range.min.map((x, i) => f(Math.min(x, 0) * (p.minScale[i] as number)));
  const hi = range.max.map((x, i) => f(Math.max(x, 0) * (p.maxScale[i] as number)));
  return computeQParams(lo, hi, args, undefined, scaleDtype);
}

/** codes q = clamp(round(w / s + V + zp), qmin, qmax); V grouped as the layout lays it out */
export function quantizeWithOffsets(w: Float32Array, l: QuantLayout, qp: QParams, v: Float32Array, args: QuantArithArgs): Int8Array {
  const { rows, cols } = l;
  const { qmin, qmax } = qRange(args.num_bits);
  const stride = rowStride(l);
  const groups = qparamShape(rows, cols, args)[1];
  const codes = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const j = args.strategy === 'tensor' ? 0 : r * groups + Math.floor(c / l.S);
      const y = f(f(f((w[r * cols + c] as number) / (qp.scale[j] as number)) + (v[r * stride + c] as number)) + (qp.zeroPoint[j] as number));
      codes[r * cols + c] = Math.min(Math.max(roundHalfEven(y), qmin), qmax);
    }
  }
  return codes;
}

export interface LearnedQuantization {
  codes: Int8Array;
  scale: Float32Array;
  zeroPoint: Int8Array;
  scaleDims: readonly [number, number];
  /** (codes − zp) · scale */
  dequantized: Float32Array;
}

/** the weight's final codes and qparams at learned parameters `p`, scales in the stored dtype */
export function quantizeLearned(w: Float32Array, l: QuantLayout, range: MinMax, p: TargetParams, args: QuantArithArgs, scaleDtype?: ScaleDtype): LearnedQuantization {
  const qp = learnedQParams(range, p, args, scaleDtype);
  const codes = quantizeWithOffsets(w, l, qp, p.v, args);
  return {
    codes,
    scale: qp.scale,
    zeroPoint: qp.zeroPoint,
    scaleDims: qparamShape(l.rows, l.cols, args),
    dequantized: dequantizeWeight(codes, l.rows, l.cols, qp, args),
  };
}
