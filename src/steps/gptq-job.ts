// A gptq step's parameters and working state, and its calibration half, shared with its data-parallel shards
// (gptq-hessian.ts): XᵀX per Linear input site, reduced inside onnxruntime as a float32 Gram per batch of
// ~2048 tokens (as llm-compressor accumulates H in float32) and summed over batches in float64 here. Both steps use
// the same tap and the same sum, and shard boundaries fall on batch boundaries (hessian-partials.ts shardWindows),
// so K shards' partial sums are the one-pass capture's batches added in another float64 order.

import type { InputSite, LayerSpec } from '../model/arch.js';
import type { LayerTap } from '../graphs/layer-runner.js';
import type { ModelConfig } from '../model/config.js';
import type { Value } from '../ort/graph.js';
import { gram32, gramOf32 } from '../ort/kernels/linalg.js';
import type { Runtime } from '../ort/session.js';
import { tensor, type Tensor } from '../tensor.js';
import type { ActQuant, ModuleQuant } from '../quant/module-quant.js';
import { forEachBatch, layerBatch } from './activations.js';
import type { LayerState } from './layer-state.js';
import { addRanges, withRanges } from './static-inputs.js';
import { routedCount, type RoutedTokens } from './experts.js';
import { sumHessianPartials } from './hessian-partials.js';
import type { StepContext } from './types.js';
import type { ActOrder } from '../quant/scheme.js';
import type { ScaleDtype } from '../quant/qparams.js';

export interface GptqParams {
  layer: number;
  modules: Record<string, ModuleQuant>;
  block_size: number;
  dampening_frac: number;
  actorder: ActOrder | null;
  offload_hessians: boolean;
  /**
   * false: a singular Hessian fails the step (`gptq-singular-hessian`) instead of escalating the dampening;
   * absent (true) otherwise. The gptq stage never sets it, so plans and keys do not carry it; tests do.
   */
  escalate_dampening?: boolean;
}

export interface Timing {
  capture: number;
  hessian: number;
  quantize: number;
  metrics: number;
  propagate: number;
}

/**
 * the layer outputs GPTQ's statistics need: each site's float32 XᵀX of the batch (`xtx.<site>`), or on a GPU
 * provider (`host`) the site's activations (`x.<site>`, [tokens, width]), which addGrams reduces with the same
 * GEMM on the CPU provider: a GPU's float32 GEMM sums in another order, and a Hessian that differs in its last
 * bits flips GPTQ codes (docs/devices.md)
 */
export function xtxTap(sites: readonly InputSite[], width: (s: InputSite) => number, routed: boolean, host: boolean): LayerTap {
  return {
    key: `gptq-xtx32${host ? '-host' : ''}:${sites.join(',')}${routed ? ':routed' : ''}`,
    build: (g, v) => {
      const out: Record<string, Value> = Object.fromEntries(
        sites.map((s) => (host ? [`x.${s}`, g.reshape(v.sites[s]!, [-1, width(s)])] : [`xtx.${s}`, gramOf32(g, v.sites[s]!, width(s))])),
      );
      if (routed && v.routing) out['routed'] = routedCount(g, v.routing);
      return out;
    },
  };
}

/** XᵀX on the CPU provider for GPU runs (xtxTap's `host`) */
export const hostGram = (rt: Runtime): boolean => rt.device !== 'cpu';

/** adds each site's float32 XᵀX of one batch (xtxTap's `xtx.<site>`, or the Gram of its `x.<site>`) to its float64 sum */
export async function addGrams(rt: Runtime, acc: ReadonlyMap<InputSite, Float64Array>, out: Readonly<Record<string, Tensor>>): Promise<void> {
  for (const [s, h] of acc) {
    const x = out[`x.${s}`];
    const part = x ? await gram32(rt, x as Tensor<'float32'>) : out[`xtx.${s}`]?.data;
    if (!(part instanceof Float32Array) || part.length !== h.length) throw new Error(`gptq capture: no float32 xtx.${s} of ${h.length} values in the layer's outputs`);
    for (let i = 0; i < h.length; i++) h[i] = (h[i] as number) + (part[i] as number);
  }
}

/**
 * one float32 [width, width] buffer per site that onnxruntime writes each batch's XᵀX into (xtxTap's
 * `xtx.<site>`), so a batch allocates none (down_proj's is 121 MiB on a 1B model, and a new one per batch waits for
 * the garbage collector); none on a GPU provider, whose taps are activations
 */
export function gramBuffers(sites: readonly InputSite[], width: (s: InputSite) => number, host: boolean): Record<string, Tensor> | undefined {
  if (host) return undefined;
  return Object.fromEntries(sites.map((s) => [`xtx.${s}`, tensor('float32', [width(s), width(s)], new Float32Array(width(s) ** 2))]));
}

/** what one run of the step works on, and what it reports */
export interface LayerJob {
  ctx: StepContext<GptqParams>;
  cfg: ModelConfig;
  layer: LayerSpec;
  prefix: string;
  state: LayerState;
  /** the layer's tensors as they came in: every capture reads these, whatever was quantized since */
  weightsIn: LayerState['tensors'];
  /** per-token activation fake-quant of Linears quantized before this step */
  actQuantIn: ActQuant;
  hidden: Tensor<'float32'>;
  tokens: number;
  width(site: InputSite): number;
  timing: Timing;
  warnings: string[];
  /** input sites whose max |x| static input quantization needs, and what the captures found */
  staticSites: readonly InputSite[];
  ranges: Map<InputSite, number>;
  /** the dtype each module stores its scales in (its weight's in the checkpoint) */
  scaleDtypes: ReadonlyMap<string, ScaleDtype>;
  /** NVFP4 global scale of each module (shared across fused Linears) */
  globalScales: ReadonlyMap<string, number>;
  /** tokens the router sends each expert (MoE layers), counted in the first capture pass */
  routed: RoutedTokens;
  tick(message: string): void;
}

export function warn(job: LayerJob, message: string): void {
  job.warnings.push(message);
  job.ctx.warn(message);
}

/** bytes of attention scores one split capture run may hold (one 512-token window of a 32-head model) */
export const CAPTURE_SCORE_BYTES = 32 * 2 ** 20;

/**
 * windows per layer run in the capture: layerBatch's whole batch (~2048 tokens), or fewer when its attention
 * scores would exceed CAPTURE_SCORE_BYTES; then splitGrams reduces each whole batch's XᵀX from the runs'
 * activations. undefined: one run per batch (every shared model; a GPU provider's host Grams)
 */
export function captureWindows(cfg: ModelConfig, T: number, host: boolean): number | undefined {
  const per = Math.max(1, Math.floor(CAPTURE_SCORE_BYTES / (cfg.numHeads * T * T * 4)));
  return host || per >= layerBatch(cfg, T) ? undefined : per;
}

/**
 * each batch's float32 XᵀX per site as the one-run capture reduces it, the layer run `windows` windows at a time:
 * the runs' activations are gathered into one [batch tokens, width] buffer per site and their Gram taken once per
 * batch with gramOf32's GEMM (the in-graph tap's bits, as a GPU run's host Grams), so onnxruntime holds one window's
 * intermediates (attention scores 32 MiB instead of 128 on a 1B model) and the Hessians keep their bits.
 * Each site's Gram goes through one float32 buffer of the widest site's size, added to its float64 sum in `acc`
 * before the next site's is taken; `each` sees every run's outputs (ranges, routed counts), `batchDone` follows each batch.
 */
export async function splitGrams(
  rt: Runtime, cfg: ModelConfig, spec: LayerSpec, weights: Readonly<Record<string, Tensor>>, hidden: Tensor<'float32'>,
  o: { sites: readonly InputSite[]; width: (s: InputSite) => number; routed: boolean; windows: number; tap?: (t: LayerTap) => LayerTap; actQuant: ActQuant },
  acc: ReadonlyMap<InputSite, Float64Array>, each: (out: Record<string, Tensor>) => void, batchDone: () => void,
): Promise<void> {
  const [N, T] = hidden.dims as [number, number];
  const batch = layerBatch(cfg, T);
  const xs = new Map(o.sites.map((s) => [s, new Float32Array(batch * T * o.width(s))] as const));
  const gram = new Float32Array(Math.max(...o.sites.map((s) => o.width(s) ** 2)));
  const base = xtxTap(o.sites, o.width, o.routed, true);
  const tap = o.tap ? o.tap(base) : base;
  // each run writes its activations into their place in the batch's buffers (no array per run)
  for (let start = 0, m = 0; start < N; start += m) {
    const first = Math.floor(start / batch) * batch;
    m = Math.min(o.windows, N - start, first + batch - start); // runs never straddle a batch
    const into = Object.fromEntries([...xs].map(([s, x]) => [`x.${s}`, tensor('float32', [m * T, o.width(s)], x.subarray((start - first) * T * o.width(s), (start + m - first) * T * o.width(s)))]));
    const window = tensor('float32', [m, T, hidden.dims[2] as number], hidden.data.subarray(start * T * (hidden.dims[2] as number), (start + m) * T * (hidden.dims[2] as number)));
    await forEachBatch(rt, cfg, spec, weights, window, { tap, skipOut: true, actQuant: o.actQuant, windows: m, into }, (out) => each(out));
    if ((start + m) % batch !== 0 && start + m !== N) continue;
    const tokens = (start + m - first) * T;
    for (const [s, x] of xs) {
      const n = o.width(s);
      const part = gram.subarray(0, n * n);
      await gram32(rt, tensor('float32', [tokens, n], x.subarray(0, tokens * n)), part);
      await addGrams(rt, new Map([[s, acc.get(s) as Float64Array]]), { [`xtx.${s}`]: tensor('float32', [n, n], part) });
    }
    batchDone();
  }
}

/** H = 2·XᵀX / tokens of each site in `which`, accumulated in float64 over the calibration batches */
async function captureHessians(job: LayerJob, which: readonly InputSite[]): Promise<Map<InputSite, Float64Array>> {
  const acc = new Map(which.map((s) => [s, new Float64Array(job.width(s) ** 2)] as const));
  let addMs = 0;
  const t0 = performance.now();
  const rangeSites = job.staticSites.filter((s) => which.includes(s));
  const count = job.routed.counts.length === 0;
  const rt = job.ctx.runtime;
  const add = async (out: Record<string, Tensor>): Promise<void> => {
    const a0 = performance.now();
    await addGrams(rt, acc, out);
    addMs += performance.now() - a0;
    job.tick(`capture ${which.join(', ')}`);
  };
  const runOut = (out: Record<string, Tensor>): void => {
    addRanges(job.ranges, out, rangeSites);
    if (count) job.routed.add(out);
  };
  const windows = captureWindows(job.cfg, job.hidden.dims[1] as number, hostGram(rt));
  if (windows !== undefined) {
    const o = { sites: which, width: job.width, routed: count, windows, tap: (t: LayerTap) => withRanges(t, rangeSites)!, actQuant: job.actQuantIn };
    await splitGrams(rt, job.cfg, job.layer, job.weightsIn, job.hidden, o, acc, runOut, () => job.tick(`capture ${which.join(', ')}`));
  } else {
    const options = { tap: withRanges(xtxTap(which, job.width, count, hostGram(rt)), rangeSites)!, skipOut: true, actQuant: job.actQuantIn, layer: job.state.layer, into: gramBuffers(which, job.width, hostGram(rt)) };
    await forEachBatch(rt, job.cfg, job.layer, job.weightsIn, job.hidden, options, async (out) => {
      runOut(out);
      await add(out);
    });
  }
  const a0 = performance.now();
  for (const h of acc.values()) for (let i = 0; i < h.length; i++) h[i] = ((h[i] as number) * 2) / job.tokens;
  addMs += performance.now() - a0;
  job.timing.capture += performance.now() - t0 - addMs;
  job.timing.hessian += addMs;
  return acc;
}

/** the sites' Hessians: summed from the shard steps' partial XᵀX when there are any, else captured here */
export async function hessiansOf(job: LayerJob, which: readonly InputSite[], partials: readonly string[]): Promise<Map<InputSite, Float64Array>> {
  if (partials.length === 0) return captureHessians(job, which);
  const t0 = performance.now();
  const h = await sumHessianPartials(partials, which, job.width, job.tokens, job.staticSites, job.ranges);
  job.timing.hessian += performance.now() - t0;
  job.tick(`sum ${partials.length} shards ${which.join(', ')}`);
  return h;
}
