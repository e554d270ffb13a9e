// One AWQ mapping's search, shared by the awq step (every calibration window in one pass) and the awq-loss
// shard steps (recipe parallel.calibration_shards K > 1: one window range each): the loss problem of the layer as
// the earlier mappings left it, and each candidate's sum of squared parent-module output errors. Sums are
// float32 per onnxruntime call and float64 across calls; calls cover fixed token chunks inside whole batches of
// `layerBatch` windows counted from window 0 (the batches calibration shards are cut on: hessian-partials.ts
// shardWindows), so a shard's per-call sums are the one-pass run's and K shards' totals differ from one pass
// only in the order of float64 additions. A Linear parent is scored from its input's Gram matrix G = XᵀX
// (float32 per batch, summed in float64; shards store theirs): ‖X(W − Q)ᵀ‖² = Σ over rows d of d·G·dᵀ.

import { weightMeans, type BalanceWeight, type DuoScaling } from '../algo/awq.js';
import { presetScheme, type QuantArgs } from '../quant/scheme.js';
import type { InputSite, LayerSpec, LinearSpec, Mapping } from '../model/arch.js';
import type { ModelConfig } from '../model/config.js';
import type { LayerTap } from '../graphs/layer-runner.js';
import { positionInputs } from '../graphs/rope.js';
import { actInput, candidateInput, candidateWeights, gramLossKernel, lossFeeds, parentLossKernel, type ParentModule } from '../graphs/awq-kernel.js';
import { gramOf32 } from '../ort/kernels/linalg.js';
import type { Runtime } from '../ort/session.js';
import { tensor, type Tensor } from '../tensor.js';
import { forEachBatch, layerBatch } from './activations.js';
import { readStatistic } from './capture.js';
import type { LayerState } from './layer-state.js';
import { actQuantKey, type ActQuant, type ModuleQuant } from '../quant/module-quant.js';
import { ggufModule } from './quantized-module.js';
import { checkSmoothable, mappingSite, parentOf, SmoothingStepError, weightMatrix } from './smoothing.js';

/** the quantizer the search assumes when the stage itself does not quantize */
export const FOLD_ONLY_SEARCH_ARGS: QuantArgs = presetScheme('W4A16_ASYM', ['Linear']).weights as QuantArgs;

/** bytes of candidate weights held at once, and values in the largest tensor of one loss call */
const CANDIDATE_BYTES = 256 * 2 ** 20;
const CALL_VALUES = 2 ** 23;
const SCORE_VALUES = 2 ** 24;
/** values in one [in, k, out] tensor of a Linear parent's Gram-loss call (its kernels hold ~4 of them) */
const GRAM_CALL_VALUES = 2 ** 23;

/**
 * The candidate ranges [k0, k) of a Linear parent's Gram losses: the chunks of `kc` candidates that
 * CANDIDATE_BYTES allows (what fixed the losses' float32 arithmetic) cut into pieces of at most `piece`
 * candidates but never of one: the loss sum over [in, k, out] adds in the same order for every k ≥ 2, while a
 * chunk of one candidate is summed as one flat array (another order), so a chunk of one stays one.
 */
export function gramChunks(K: number, kc: number, piece: number): [number, number][] {
  const out: [number, number][] = [];
  const p = Math.max(2, piece);
  for (let c0 = 0; c0 < K; c0 += kc) {
    const c1 = Math.min(K, c0 + kc);
    if (c1 - c0 <= p) {
      out.push([c0, c1 - c0]);
      continue;
    }
    for (let k0 = c0; k0 < c1; k0 += p) {
      const k = Math.min(p, c1 - k0);
      if (c1 - k0 - k === 1) {
        out.push([k0, k + 1]);
        break;
      }
      out.push([k0, k]);
    }
  }
  return out;
}

export interface LossProblem {
  rt: Runtime;
  layer: number;
  cfg: ModelConfig;
  layerSpec: LayerSpec;
  /** the layer's current (folded, unquantized) tensors */
  tensors: Readonly<Record<string, Tensor<'float32'>>>;
  parent: ParentModule;
  site: InputSite;
  /** quantization args of each searched balance layer */
  args: Readonly<Record<string, QuantArgs>>;
  actQuant: ActQuant;
}

/** the layer a mapping is searched on, and the step's search parameters */
export interface SearchSetup {
  rt: Runtime;
  layer: number;
  cfg: ModelConfig;
  layerSpec: LayerSpec;
  state: LayerState;
  /** the capture step's directory (mean |x| per balance input) */
  stats: string;
  modules: Readonly<Record<string, ModuleQuant>>;
  duo: DuoScaling;
  actQuant: ActQuant;
}

/** one mapping's search: its loss problem, mean |x| and (with duo scaling) w̄ of the balance weights */
export interface MappingSearch {
  problem: LossProblem;
  xMean: Float32Array;
  wMean: Float32Array | undefined;
}

/** the quantizer of each searched balance layer; a fold-only search assumes W4A16_ASYM for all but routers */
function searchArgs(mapping: Mapping, modules: Readonly<Record<string, ModuleQuant>>, layer: LayerSpec): Record<string, QuantArgs> {
  const foldOnly = Object.keys(modules).length === 0;
  const out: Record<string, QuantArgs> = {};
  for (const b of mapping.balance) {
    const router = layer.linears.some((l) => l.local === b && l.role === 'router');
    let args = foldOnly ? (router ? undefined : FOLD_ONLY_SEARCH_ARGS) : modules[b]?.weights;
    const module = modules[b];
    const gguf = module && ggufModule(module, layer.linears.find((l) => l.local === b)!.inFeatures);
    // a GGUF module is searched with the block type it is stored in; one no block fits stays unquantized
    if (gguf) args = 'skip' in gguf ? undefined : gguf.module.weights;
    if (args) out[b] = args;
  }
  return out;
}

/** mapping `m` searched on the layer as it stands; undefined when none of its balance layers is quantized */
export async function mappingSearch(s: SearchSetup, m: Mapping): Promise<MappingSearch | undefined> {
  checkSmoothable(s.state, m);
  const linears = s.layerSpec.linears;
  const site = mappingSite(m, linears);
  const args = searchArgs(m, s.modules, s.layerSpec);
  const searched = m.balance.filter((b) => args[b]);
  if (searched.length === 0) return undefined;
  const parent = { ...parentOf(m, linears), balance: searched };
  const balance: BalanceWeight[] = searched.map((b) => ({ weight: weightMatrix(s.state.tensors, b, s.layer), args: args[b]! }));
  const xMean = await readStatistic(s.stats, m.balance[0]!, 'absmean');
  if (xMean.length !== balance[0]!.weight.cols) {
    throw new SmoothingStepError('bad-mapping', `layer ${s.layer}: the captured mean |X| of ${m.balance[0]} has ${xMean.length} channels but the balance weights have ${balance[0]!.weight.cols} input channels`);
  }
  const problem: LossProblem = { rt: s.rt, layer: s.layer, cfg: s.cfg, layerSpec: s.layerSpec, tensors: s.state.tensors, parent, site, args, actQuant: s.actQuant };
  return { problem, xMean, wMean: s.duo !== false ? weightMeans(balance) : undefined };
}

const linearSpec = (p: LossProblem): LinearSpec => p.layerSpec.linears.find((l) => l.local === p.parent.balance[0])!;

/** the width of the parent module's output: a Linear parent's out features, else the hidden size */
export const parentWidth = (p: LossProblem): number => (p.parent.kind === 'linear' ? linearSpec(p).outFeatures : p.cfg.hiddenSize);

/**
 * XᵀX of a Linear parent's input (per-token activation fake-quant applied): float32 per batch, summed in float64;
 * on the CPU provider onnxruntime writes each batch's into `into` ([in, in] float32, a new one if absent), not a new array
 */
export async function linearInputGram(p: LossProblem, hidden: Tensor<'float32'>, into?: Float32Array): Promise<Float64Array> {
  const spec = linearSpec(p);
  const n = spec.inFeatures;
  const a = p.actQuant.get(spec.local);
  const tap: LayerTap = {
    key: `awq.gram32:${p.site}:${actQuantKey(a === undefined ? undefined : new Map([[spec.local, a]]))}`,
    build: (g, v) => ({ gram: gramOf32(g, a === undefined ? v.sites[p.site]! : actInput(g, v.sites[p.site]!, a, spec), n) }),
  };
  const acc = new Float64Array(n * n);
  // on the CPU provider only, as the GPTQ capture's Gram buffers (gptq-job.ts gramBuffers)
  const gram = p.rt.device === 'cpu' ? { gram: tensor('float32', [n, n], into ?? new Float32Array(n * n)) } : undefined;
  await forEachBatch(p.rt, p.cfg, p.layerSpec, p.tensors, hidden, { actQuant: p.actQuant, tap, skipOut: true, into: gram }, (out) => {
    const part = out['gram']!.data as Float32Array;
    for (let i = 0; i < acc.length; i++) acc[i] = (acc[i] as number) + (part[i] as number);
  });
  return acc;
}

/** a Linear parent's squared output error Σ d·G·dᵀ of each of K candidates' scales [K, in], from G (float32) */
export async function gramSums(p: LossProblem, gram: Float32Array, scales: Float32Array, K: number): Promise<Float64Array> {
  const local = linearSpec(p).local;
  const w = weightMatrix(p.tensors, local, p.layer);
  const g = tensor('float32', [w.cols, w.cols], gram);
  const kernel = await gramLossKernel(p.rt, w.rows, w.cols);
  const kc = Math.max(1, Math.min(K, Math.floor(CANDIDATE_BYTES / (4 * w.rows * w.cols))));
  // pieces only with ≥ 64 rows: with 24 or 32 rows onnxruntime's sum of two candidates differed from five's
  const chunks = gramChunks(K, kc, w.rows >= 64 ? Math.floor(GRAM_CALL_VALUES / (w.rows * w.cols)) : kc);
  // one buffer for every chunk's candidates, written in place by onnxruntime
  const buffer = new Float32Array(Math.max(...chunks.map(([, k]) => k)) * w.rows * w.cols);
  const sse = new Float64Array(K);
  for (const [k0, k] of chunks) {
    const cand = await candidateWeights(p.rt, w.data, w.rows, w.cols, scales.subarray(k0 * w.cols, (k0 + k) * w.cols), k, p.args[local]!, buffer);
    const out = (await kernel.run({ w: tensor('float32', [w.rows, w.cols], w.data), candidates: tensor('float32', [w.cols, k, w.rows], cand), gram: g }))['sse']!.data as Float32Array;
    out.forEach((v, j) => (sse[k0 + j] = v));
  }
  return sse;
}

/**
 * A module parent's (self-attention, MLP) squared output error of each of K candidates' scales [K, channels]
 * over every token of `hidden`: float32 per call, summed in float64, calls inside batches from window 0
 */
export async function moduleSums(p: LossProblem, hidden: Tensor<'float32'>, scales: Float32Array, K: number): Promise<Float64Array> {
  const { cfg, parent } = p;
  const [N, T, H] = hidden.dims as [number, number, number];
  const specs = parent.balance.map((b) => p.layerSpec.linears.find((l) => l.local === b)!);
  const cols = specs[0]!.inFeatures;
  const attention = parent.kind === 'self_attn';
  const widest = parent.kind === 'mlp' ? Math.max(...specs.map((s) => s.outFeatures)) : Math.max(H, cfg.numHeads * cfg.headDim);
  let kc = Math.floor(CANDIDATE_BYTES / specs.reduce((n, s) => n + 4 * s.inFeatures * s.outFeatures, 0));
  kc = Math.min(kc, attention ? Math.floor(Math.min(CALL_VALUES / (T * widest), SCORE_VALUES / (cfg.numHeads * T * T))) : Math.floor(CALL_VALUES / widest));
  kc = Math.max(1, Math.min(K, kc));
  const kernel = await parentLossKernel(p.rt, cfg, p.layerSpec, parent, p.actQuant);
  const batch = layerBatch(cfg, T);
  const sse = new Float64Array(K);
  // one buffer per balance layer for every chunk's candidates, written in place by onnxruntime
  const buffers = specs.map((s) => new Float32Array(kc * s.inFeatures * s.outFeatures));
  for (let k0 = 0; k0 < K; k0 += kc) {
    const k = Math.min(kc, K - k0);
    const available: Record<string, Tensor> = { ...p.tensors };
    for (const [i, s] of specs.entries()) {
      const w = weightMatrix(p.tensors, s.local, p.layer);
      const cand = await candidateWeights(p.rt, w.data, w.rows, w.cols, scales.subarray(k0 * cols, (k0 + k) * cols), k, p.args[s.local]!, buffers[i]);
      available[candidateInput(s.local)] = tensor('float32', [w.cols, k, w.rows], cand);
    }
    const run = async (feeds: Record<string, Tensor>): Promise<void> => {
      const out = (await kernel.run(lossFeeds(kernel, { ...available, ...feeds })))['sse']!.data as Float32Array;
      for (let j = 0; j < k; j++) sse[k0 + j] = (sse[k0 + j] as number) + (out[j] as number);
    };
    if (attention) {
      // the basic-op attention (as all calibration, steps/activations.ts) holds [k·windows, heads, T, T] scores
      const windows = Math.max(1, Math.min(batch, Math.floor(Math.min(CALL_VALUES / (k * T * widest), SCORE_VALUES / (k * cfg.numHeads * T * T)))));
      const pos = positionInputs(cfg, p.layerSpec.attention, T);
      for (let b0 = 0; b0 < N; b0 += batch) {
        const end = Math.min(N, b0 + batch);
        for (let b = b0; b < end; b += windows) {
          const m = Math.min(windows, end - b);
          await run({ ...pos, x: tensor('float32', [m, T, H], hidden.data.subarray(b * T * H, (b + m) * T * H)) });
        }
      }
    } else {
      const tap: LayerTap = { key: `awq.site:${p.site}`, build: (_g, v) => ({ site: v.sites[p.site]! }) };
      await forEachBatch(p.rt, cfg, p.layerSpec, p.tensors, hidden, { actQuant: p.actQuant, tap, skipOut: true }, async (out) => {
        const x = out['site']!;
        const width = x.dims[2] as number;
        const tokens = x.data.length / width;
        const step = Math.max(1, Math.floor(CALL_VALUES / (k * widest)));
        for (let r = 0; r < tokens; r += step) {
          const n = Math.min(step, tokens - r);
          await run({ x: tensor('float32', [n, width], (x.data as Float32Array).subarray(r * width, (r + n) * width)) });
        }
      });
    }
  }
  return sse;
}

/** a Linear parent's input Gram in float32 (the float64 sum rounded), in the buffer the batches' Grams were written into */
export async function gramOfInput(p: LossProblem, hidden: Tensor<'float32'>): Promise<Float32Array> {
  const n = linearSpec(p).inFeatures;
  const buffer = new Float32Array(n * n);
  buffer.set(await linearInputGram(p, hidden, buffer));
  return buffer;
}

/** mean squared parent-output error of each of K candidates' scales [K, channels] over every token of `hidden` */
export async function candidateLosses(p: LossProblem, hidden: Tensor<'float32'>, scales: Float32Array, K: number): Promise<Float64Array> {
  const [N, T] = hidden.dims as [number, number, number];
  const sse = p.parent.kind === 'linear' ? await gramSums(p, await gramOfInput(p, hidden), scales, K) : await moduleSums(p, hidden, scales, K);
  return sse.map((v) => v / (N * T * parentWidth(p)));
}
