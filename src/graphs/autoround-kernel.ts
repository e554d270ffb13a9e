// AutoRound's block objective in one onnxruntime session: the decoder block built from basic ops
// (graphs/decoder-graph.ts) with every targeted Linear's weight replaced by an in-graph quantizer of W with
// learnable rounding offsets V and min/max factors, the MSE against the full-precision block's output, and
// (ort/autodiff.ts) the gradients of that loss w.r.t. every V and factor. Source: intel/auto-round
// data_type/int.py (quant_tensor_sym/asym: how V and the factors enter the qparams) and wrapper.py
// (weight_min/weight_max observed once, factors multiply them). The arithmetic is compressed-tensors' (as
// quant/qparams.ts, op for op in fp32), so V = 0 and factors 1 give the round-to-nearest weight bit for bit:
//   lo = min·a, hi = max·b (min ≤ 0 ≤ max widened by the caller, a/b the factors)
//   symmetric:  s = max(max(|lo|, |hi|) / ((qmax − qmin) / 2), eps), zp = 0
//   asymmetric: s = max((hi − lo) / (qmax − qmin), eps), zp = round(clip(qmin − lo / s, qmin, qmax))
//   q = clip(round(w / s + V + zp), qmin, qmax), ŵ = (q − zp) · s
// round is Graph.roundHalfEven (the WebGPU provider has no Round) written as x + (round(x) − x) with the
// bracket a constant for the gradient: auto-round's round_ste, gradient exactly 1. The sum is round(x) bit for
// bit (round(x) − x is exact: the two are within a factor 2 of each other, or round(x) is 0), and the backward
// pass keeps none of the rounding's weight-sized values alive (differentiating roundHalfEven's own ops, which
// multiply by ±1 twice, gave the same gradient and kept its sign tensor until the end of the backward pass).
// Clipping after rounding lets V's gradient through exactly where the rounded code is in range, as
// auto-round's clamp(round_ste(·) + zp).

import type { LayerSpec } from '../model/arch.js';
import type { ModelConfig } from '../model/config.js';
import { decoderLayer } from './decoder-graph.js';
import { layerShapeKey } from './layer-shape.js';
import { positionInputs } from './rope.js';
import type { QuantLayout, TargetGrads, TargetParams } from '../algo/autoround-layout.js';
import type { Tensor } from '../tensor.js';
import { gradients } from '../ort/autodiff.js';
import { Graph, type Value } from '../ort/graph.js';
import { ggufLearnedBlocks } from './autoround-gguf.js';
import type { LearnedBlockType } from '../algo/autoround-gguf.js';
import type { Kernel, Runtime } from '../ort/session.js';
import { FP32_EPS } from '../quant/qparams.js';
import { actQuantKey, type ActQuant } from '../quant/module-quant.js';


/** one targeted Linear of the block */
export interface AutoRoundTarget {
  readonly local: string;
  readonly layout: QuantLayout;
  readonly bits: number;
  readonly symmetric: boolean;
  /** a GGUF block type: the block's float16 qparams and code range (graphs/autoround-gguf.ts) replace bits/symmetric */
  readonly gguf?: LearnedBlockType;
}

export interface AutoRoundBlockSpec {
  readonly cfg: ModelConfig;
  /** the block's Linears, norms and attention (rope tables and mask) */
  readonly layer: LayerSpec;
  readonly targets: readonly AutoRoundTarget[];
  /** Linears whose inputs are fake-quantized per token (local → bits) */
  readonly actQuant: ActQuant;
  /** differentiate w.r.t. the min/max factors too */
  readonly minmax: boolean;
  /** false: Round becomes Identity, so finite differences can check the gradients; default true */
  readonly rounding?: boolean;
  /** also output every target's fake-quantized weight [rows, cols] as `${local}.qweight` */
  readonly weights?: boolean;
}

/** graph input names of a target's tensors */
export function targetInputNames(local: string): { w: string; v: string; minScale: string; maxScale: string; min: string; max: string } {
  return {
    w: `${local}.weight_groups`,
    v: `${local}.value`,
    minScale: `${local}.min_scale`,
    maxScale: `${local}.max_scale`,
    min: `${local}.weight_min`,
    max: `${local}.weight_max`,
  };
}

interface TargetValues {
  qweight: Value;
  v: Value;
  minScale: Value;
  maxScale: Value;
}

/** round half to even with a straight-through gradient: the values in `stops` are constants for autodiff */
function roundSte(g: Graph, x: Value, stops: Value[]): Value {
  const offset = g.sub(g.roundHalfEven(x), x);
  stops.push(offset);
  return g.add(x, offset);
}

function quantizer(g: Graph, t: AutoRoundTarget, rounding: boolean, stops: Value[]): TargetValues {
  const { rows, cols, R, G, S } = t.layout;
  const n = targetInputNames(t.local);
  const w = g.input(n.w, 'float32', [R, G, S]);
  const v = g.input(n.v, 'float32', [R, G, S]);
  const minScale = g.input(n.minScale, 'float32', [R, G]);
  const maxScale = g.input(n.maxScale, 'float32', [R, G]);
  const lo = g.mul(g.input(n.min, 'float32', [R, G]), minScale);
  const hi = g.mul(g.input(n.max, 'float32', [R, G]), maxScale);
  const qmin = -(2 ** (t.bits - 1));
  const qmax = 2 ** (t.bits - 1) - 1;
  const round = (x: Value): Value => (rounding ? roundSte(g, x, stops) : g.op('Identity', [x]));
  if (t.gguf) return { qweight: g.reshape(ggufLearnedBlocks(g, t.gguf, w, v, lo, hi, round), [rows, cols]), v, minScale, maxScale };
  const atLeastEps = (x: Value): Value => g.op('Max', [x, g.scalar(FP32_EPS)]);
  let scale: Value;
  let zp: Value | undefined;
  if (t.symmetric) {
    scale = atLeastEps(g.div(g.op('Max', [g.op('Abs', [lo]), g.op('Abs', [hi])]), g.scalar((qmax - qmin) / 2)));
  } else {
    scale = atLeastEps(g.div(g.sub(hi, lo), g.scalar(qmax - qmin)));
    zp = round(g.op('Clip', [g.sub(g.scalar(qmin), g.div(lo, scale)), g.scalar(qmin), g.scalar(qmax)]));
  }
  const s3 = g.op('Unsqueeze', [scale, g.ints([-1])]);
  const z3 = zp && g.op('Unsqueeze', [zp, g.ints([-1])]);
  let y = g.add(g.div(w, s3), v);
  if (z3) y = g.add(y, z3);
  const q = g.op('Clip', [round(y), g.scalar(qmin), g.scalar(qmax)]);
  const deq = g.mul(z3 ? g.sub(q, z3) : q, s3);
  let qweight: Value;
  if (R * G * S === rows * cols) qweight = g.reshape(deq, [rows, cols]);
  else qweight = g.op('Slice', [g.reshape(deq, [rows, G * S]), g.ints([0]), g.ints([cols]), g.ints([1])]);
  return { qweight, v, minScale, maxScale };
}

/** the block loss (and gradients) graph: inputs x, target [B, T, H], cos, sin, mask, the layer's tensors */
export function autoroundBlockGraph(spec: AutoRoundBlockSpec): Graph {
  const { cfg } = spec;
  const { linears, norms } = spec.layer;
  const g = new Graph('autoround_block');
  const x = g.input('x', 'float32', ['B', 'T', cfg.hiddenSize]);
  const target = g.input('target', 'float32', ['B', 'T', cfg.hiddenSize]);
  const cos = g.input('cos', 'float32', ['T', cfg.headDim]);
  const sin = g.input('sin', 'float32', ['T', cfg.headDim]);
  const mask = g.input('mask', 'float32', ['T', 'T']);
  const weights: Record<string, Value> = {};
  for (const n of norms) weights[n.local] = g.input(n.local, 'float32', [n.size]);
  const quantized = new Map<string, TargetValues>();
  const stops: Value[] = [];
  for (const t of spec.targets) quantized.set(t.local, quantizer(g, t, spec.rounding ?? true, stops));
  for (const l of linears) {
    const q = quantized.get(l.local);
    weights[`${l.local}.weight`] = q ? q.qweight : g.input(`${l.local}.weight`, 'float32', [l.outFeatures, l.inFeatures]);
    if (l.bias) weights[`${l.local}.bias`] = g.input(`${l.local}.bias`, 'float32', [l.outFeatures]);
  }
  const { out } = decoderLayer(g, cfg, linears, { x, cos, sin, mask, weights }, { actQuant: spec.actQuant });
  const diff = g.sub(out, target);
  const loss = g.op('ReduceMean', [g.mul(diff, diff)], { keepdims: 0 });
  const wrt: [string, Value, number[]][] = [];
  for (const t of spec.targets) {
    const q = quantized.get(t.local)!;
    const n = targetInputNames(t.local);
    const { R, G, S } = t.layout;
    wrt.push([n.v, q.v, [R, G, S]]);
    if (spec.minmax) wrt.push([n.minScale, q.minScale, [R, G]], [n.maxScale, q.maxScale, [R, G]]);
  }
  const grads = gradients(g, loss, wrt.map(([, v]) => v), { stop: stops });
  g.output(loss, 'loss');
  grads.forEach((v, i) => g.output(v, `grad:${wrt[i]![0]}`, wrt[i]![2]));
  if (spec.weights) for (const t of spec.targets) g.output(quantized.get(t.local)!.qweight, `${t.local}.qweight`, [t.layout.rows, t.layout.cols]);
  return g;
}

function kernelKey(spec: AutoRoundBlockSpec): string {
  const shape = layerShapeKey(spec.cfg, spec.layer.linears, spec.layer.norms);
  const targets = spec.targets.map((t) => `${t.local}:${t.layout.R}x${t.layout.G}x${t.layout.S}:${t.gguf ?? `${t.bits}${t.symmetric ? 's' : 'a'}`}`).join(',');
  const aq = actQuantKey(spec.actQuant);
  const flags = `${spec.minmax ? 'mm' : 'v'}:${spec.rounding === false ? 'id' : 'round'}:${spec.weights ? 'w' : ''}`;
  return `autoround.block:${shape}:${targets}:${aq}:${flags}`;
}

/** the block's largest Linear weight (values) up to which the session keeps an arena */
export const ARENA_MAX_WEIGHT = 2 ** 20;

/**
 * the memoised session of `spec`; its threads sleep between ops (large ops, run once per iteration). Where the
 * block's largest weight has ≤ 2^20 values (the shared models), a call's fresh buffers cost page faults and cold
 * caches comparable to its arithmetic (wiki-llama-8m: ~40 ms of system time in a ~270 ms iteration), so freed
 * buffers stay in the session's arena for the next iteration (one call's buffers, no memory pattern's second
 * block beside them); a larger block's arena would hold ~1.9 GiB per call at the 1B shape for a few percent.
 * `releaseAutoRoundKernels` frees the sessions and arenas after a block's loop.
 */
export function autoroundBlockKernel(rt: Runtime, spec: AutoRoundBlockSpec): Promise<Kernel> {
  const largest = Math.max(0, ...spec.layer.linears.map((l) => l.outFeatures * l.inFeatures));
  const arena = largest <= ARENA_MAX_WEIGHT;
  return rt.kernel(kernelKey(spec), () => autoroundBlockGraph(spec), { spin: false, ...(arena ? { arena, pattern: false } : {}) });
}

/** release every AutoRound block session (and its arena): the autoround step calls it after its loop */
export const releaseAutoRoundKernels = (rt: Runtime): Promise<void> => rt.release('autoround.block:');

/** what stays fixed while a block trains: its tensors, and each target's grouped weight and observed range */
export interface BlockConstants {
  /** every non-targeted tensor of the layer by local name */
  tensors: Readonly<Record<string, Tensor>>;
  /** per target: W grouped [R, G, S]; min (≤ 0) and max (≥ 0) [R, G] */
  targets: Record<string, { w: Float32Array; min: Float32Array; max: Float32Array }>;
}

export interface BlockResult {
  loss: number;
  /** per target: dL/dV, and dL/d factors when the kernel differentiates them */
  grads: Record<string, TargetGrads>;
  /** per target: the fake-quantized weight [rows, cols] (kernels built with `weights`) */
  qweights: Record<string, Float32Array>;
}

/** per target, arrays of the gradients' sizes for runAutoRoundBlock to write into (allocated once per block) */
export function gradientBuffers(spec: AutoRoundBlockSpec): Record<string, TargetGrads> {
  return Object.fromEntries(spec.targets.map((t) => {
    const { R, G, S } = t.layout;
    const mm = spec.minmax ? { minScale: new Float32Array(R * G), maxScale: new Float32Array(R * G) } : {};
    return [t.local, { v: new Float32Array(R * G * S), ...mm }];
  }));
}

/**
 * loss and gradients for inputs x and targets y [B, T, H] at `params`; with `into` (gradientBuffers) onnxruntime
 * writes the gradients into those arrays, which the result's grads then are, instead of new ones per call
 */
export async function runAutoRoundBlock(
  kernel: Kernel,
  spec: AutoRoundBlockSpec,
  constants: BlockConstants,
  x: Tensor<'float32'>,
  y: Tensor<'float32'>,
  params: Readonly<Record<string, TargetParams>>,
  into?: Readonly<Record<string, TargetGrads>>,
): Promise<BlockResult> {
  const feeds: Record<string, Tensor> = { x, target: y, ...positionInputs(spec.cfg, spec.layer.attention, x.dims[1] as number) };
  const f32 = (dims: readonly number[], data: Float32Array): Tensor => ({ dtype: 'float32', dims, data });
  for (const t of spec.targets) {
    const { R, G, S } = t.layout;
    const n = targetInputNames(t.local);
    const c = constants.targets[t.local];
    const p = params[t.local];
    if (!c || !p) throw new Error(`autoround block: no weight or parameters for target "${t.local}"`);
    Object.assign(feeds, {
      [n.w]: f32([R, G, S], c.w),
      [n.min]: f32([R, G], c.min),
      [n.max]: f32([R, G], c.max),
      [n.v]: f32([R, G, S], p.v),
      [n.minScale]: f32([R, G], p.minScale),
      [n.maxScale]: f32([R, G], p.maxScale),
    });
  }
  for (const name of kernel.inputNames) {
    if (name in feeds) continue;
    const t = constants.tensors[name];
    if (!t) throw new Error(`autoround block: layer tensor "${name}" missing (have ${Object.keys(constants.tensors).join(', ')})`);
    feeds[name] = t;
  }
  const outputs: Record<string, Tensor> = {};
  for (const t of into ? spec.targets : []) {
    const n = targetInputNames(t.local);
    const b = into![t.local];
    if (!b) throw new Error(`autoround block: no gradient buffers for target "${t.local}"`);
    const { R, G, S } = t.layout;
    outputs[`grad:${n.v}`] = f32([R, G, S], b.v);
    if (b.minScale && kernel.outputNames.includes(`grad:${n.minScale}`)) outputs[`grad:${n.minScale}`] = f32([R, G], b.minScale);
    if (b.maxScale && kernel.outputNames.includes(`grad:${n.maxScale}`)) outputs[`grad:${n.maxScale}`] = f32([R, G], b.maxScale);
  }
  const out = into ? await kernel.run(feeds, kernel.outputNames, outputs) : await kernel.run(feeds);
  const data = (name: string): Float32Array | undefined => out[name]?.data as Float32Array | undefined;
  const grads: BlockResult['grads'] = {};
  const qweights: BlockResult['qweights'] = {};
  for (const t of spec.targets) {
    const n = targetInputNames(t.local);
    const v = data(`grad:${n.v}`);
    if (!v) throw new Error(`autoround block: the kernel returned no gradient for "${n.v}"`);
    const minScale = data(`grad:${n.minScale}`);
    const maxScale = data(`grad:${n.maxScale}`);
    grads[t.local] = { v, ...(minScale ? { minScale } : {}), ...(maxScale ? { maxScale } : {}) };
    const q = data(`${t.local}.qweight`);
    if (q) qweights[t.local] = q;
  }
  return { loss: (out['loss']?.data as Float32Array)[0] as number, grads, qweights };
}
