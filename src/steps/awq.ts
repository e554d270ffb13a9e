// Step `awq`: activation-aware scaling of one decoder layer, then (when the stage has a scheme) quantization.
// Mappings run in order; each grid-searches scales on the layer's calibration inputs, measuring its parent
// module's output error in batched onnxruntime graphs (graphs/awq-kernel.ts), and folds the best before the next
// mapping is searched. Memory stays bounded: candidates are evaluated in groups whose weights fit a budget, and
// calibration tokens in chunks. Without a scheme (a later stage quantizes) the search quantizes as W4A16_ASYM
// (llm-awq's default q_config: int4, zero point, group 128) and the layer is left unquantized.
// GGUF schemes (Q8_0, Q4_0, Q4_1, Q5_0): candidates are scored with ggml's block quantizer as graph ops
// (graphs/gguf-fake-quant.ts, float16 block scales) and the smoothed weights quantized by ggml's reference
// quantizer, the same rounding, so the gguf output packs exactly what the search scored.

import { awqGrid, awqSearch, weightMeans, type BalanceWeight, type DuoScaling } from '../algo/awq.js';
import { quantizeWeightRtn } from '../algo/fake-quant.js';
import { presetScheme, type QuantArgs } from '../quant/scheme.js';
import { summarizeScales } from '../algo/smoothquant.js';
import type { Json } from '../cache/key.js';
import type { InputSite, LayerSpec, LinearSpec, Mapping } from '../model/arch.js';
import type { ModelConfig } from '../model/config.js';
import type { LayerTap } from '../graphs/layer-runner.js';
import { positionInputs } from '../graphs/rope.js';
import { actInput, candidateInput, candidateWeights, gramLossKernel, lossFeeds, parentLossKernel, type ParentModule } from '../graphs/awq-kernel.js';
import { gramOf32 } from '../ort/kernels/linalg.js';
import type { Runtime } from '../ort/session.js';
import { tensor, type Tensor } from '../tensor.js';
import { forEachBatch, readHidden } from './activations.js';
import { readStatistic } from './capture.js';
import { actQuantOf, openLayerInput, roundToStoredDtypes, scaleDtypesOf, writeLayerState } from './layer-state.js';
import type { ModuleQuant } from '../quant/module-quant.js';
import { ggufModule, relativeError, setQuantized, setQuantizedGguf } from './quantized-module.js';
import { quantizeGgufRtn } from '../quant/gguf-weight.js';
import { checkSmoothable, foldScales, mappingSite, parentOf, SmoothingStepError, weightMatrix } from './smoothing.js';
import { input, type StepImpl } from './types.js';
import { actQuantKey, type ActQuant } from '../quant/module-quant.js';

export interface AwqParams {
  layer: number;
  /** targeted Linears and their quantization; empty: fold the scales only */
  modules: Record<string, ModuleQuant>;
  mappings: Mapping[];
  duo_scaling: DuoScaling;
  n_grid: number;
}

/** the quantizer the search assumes when the stage itself does not quantize */
export const FOLD_ONLY_SEARCH_ARGS: QuantArgs = presetScheme('W4A16_ASYM', ['Linear']).weights as QuantArgs;

/** bytes of candidate weights held at once, and values in the largest tensor of one loss call */
const CANDIDATE_BYTES = 256 * 2 ** 20;
const CALL_VALUES = 2 ** 23;
const SCORE_VALUES = 2 ** 24;

export interface LossProblem {
  rt: Runtime;
  layer: number;
  cfg: ModelConfig;
  layerSpec: LayerSpec;
  /** the layer's current (folded, unquantized) tensors */
  tensors: Readonly<Record<string, Tensor<'float32'>>>;
  hidden: Tensor<'float32'>;
  parent: ParentModule;
  site: InputSite;
  /** quantization args of each searched balance layer */
  args: Readonly<Record<string, QuantArgs>>;
  actQuant: ActQuant;
}

/** XᵀX (float32 per batch, summed in float64; per-token activation fake-quant applied) of a Linear parent's input */
async function linearInputGram(p: LossProblem, spec: LinearSpec): Promise<Float32Array> {
  const n = spec.inFeatures;
  const a = p.actQuant.get(spec.local);
  const tap: LayerTap = {
    key: `awq.gram32:${p.site}:${actQuantKey(a === undefined ? undefined : new Map([[spec.local, a]]))}`,
    build: (g, v) => ({ gram: gramOf32(g, a === undefined ? v.sites[p.site]! : actInput(g, v.sites[p.site]!, a, spec), n) }),
  };
  const acc = new Float64Array(n * n);
  await forEachBatch(p.rt, p.cfg, p.layerSpec, p.tensors, p.hidden, { actQuant: p.actQuant, tap, skipOut: true }, (out) => {
    const part = out['gram']!.data as Float32Array;
    for (let i = 0; i < acc.length; i++) acc[i] = (acc[i] as number) + (part[i] as number);
  });
  return Float32Array.from(acc);
}

/** a Linear parent's candidate losses from its input's Gram matrix: no pass over the tokens per candidate */
async function linearLosses(p: LossProblem, scales: Float32Array, K: number): Promise<Float64Array> {
  const [N, T] = p.hidden.dims as [number, number, number];
  const spec = p.layerSpec.linears.find((l) => l.local === p.parent.balance[0])!;
  const w = weightMatrix(p.tensors, spec.local, p.layer);
  const gram = tensor('float32', [w.cols, w.cols], await linearInputGram(p, spec));
  const kernel = await gramLossKernel(p.rt, w.rows, w.cols);
  const kc = Math.max(1, Math.min(K, Math.floor(CANDIDATE_BYTES / (4 * w.rows * w.cols))));
  const sse = new Float64Array(K);
  for (let k0 = 0; k0 < K; k0 += kc) {
    const k = Math.min(kc, K - k0);
    const cand = await candidateWeights(p.rt, w.data, w.rows, w.cols, scales.subarray(k0 * w.cols, (k0 + k) * w.cols), k, p.args[spec.local]!);
    const out = (await kernel.run({ w: tensor('float32', [w.rows, w.cols], w.data), candidates: tensor('float32', [w.cols, k, w.rows], cand), gram }))['sse']!.data as Float32Array;
    out.forEach((v, j) => (sse[k0 + j] = v));
  }
  return sse.map((v) => v / (N * T * spec.outFeatures));
}

/** mean squared parent-output error of each of K candidates' scales [K, channels] */
export async function candidateLosses(p: LossProblem, scales: Float32Array, K: number): Promise<Float64Array> {
  if (p.parent.kind === 'linear') return linearLosses(p, scales, K);
  const { cfg, hidden, parent } = p;
  const [N, T, H] = hidden.dims as [number, number, number];
  const specs = parent.balance.map((b) => p.layerSpec.linears.find((l) => l.local === b)!);
  const cols = specs[0]!.inFeatures;
  const attention = parent.kind === 'self_attn';
  const widest = parent.kind === 'linear' ? specs[0]!.outFeatures : parent.kind === 'mlp' ? Math.max(...specs.map((s) => s.outFeatures)) : Math.max(H, cfg.numHeads * cfg.headDim);
  const outWidth = parent.kind === 'linear' ? specs[0]!.outFeatures : H;
  let kc = Math.floor(CANDIDATE_BYTES / specs.reduce((n, s) => n + 4 * s.inFeatures * s.outFeatures, 0));
  kc = Math.min(kc, attention ? Math.floor(Math.min(CALL_VALUES / (T * widest), SCORE_VALUES / (cfg.numHeads * T * T))) : Math.floor(CALL_VALUES / widest));
  kc = Math.max(1, Math.min(K, kc));
  const kernel = await parentLossKernel(p.rt, cfg, p.layerSpec, parent, p.actQuant);
  const sse = new Float64Array(K);
  for (let k0 = 0; k0 < K; k0 += kc) {
    const k = Math.min(kc, K - k0);
    const available: Record<string, Tensor> = { ...p.tensors };
    for (const s of specs) {
      const w = weightMatrix(p.tensors, s.local, p.layer);
      const cand = await candidateWeights(p.rt, w.data, w.rows, w.cols, scales.subarray(k0 * cols, (k0 + k) * cols), k, p.args[s.local]!);
      available[candidateInput(s.local)] = tensor('float32', [w.cols, k, w.rows], cand);
    }
    const run = async (feeds: Record<string, Tensor>): Promise<void> => {
      const out = (await kernel.run(lossFeeds(kernel, { ...available, ...feeds })))['sse']!.data as Float32Array;
      for (let j = 0; j < k; j++) sse[k0 + j] = (sse[k0 + j] as number) + (out[j] as number);
    };
    if (attention) {
      // the basic-op attention holds [k·windows, heads, T, T] scores
      const windows = Math.max(1, Math.min(N, Math.floor(Math.min(CALL_VALUES / (k * T * widest), SCORE_VALUES / (k * cfg.numHeads * T * T)))));
      const pos = positionInputs(cfg, p.layerSpec.attention, T);
      for (let b = 0; b < N; b += windows) {
        const m = Math.min(windows, N - b);
        await run({ ...pos, x: tensor('float32', [m, T, H], hidden.data.subarray(b * T * H, (b + m) * T * H)) });
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
  return sse.map((v) => v / (N * T * outWidth));
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

export const awqStep: StepImpl<'awq', AwqParams> = {
  kind: 'awq',
  // 3 and 2 changed its results on two lines of work; 4 has both; 5: the basic-op layer and attention losses
  version: 5,
  async run(ctx) {
    const { layer, modules, mappings, duo_scaling: duo, n_grid: nGrid } = ctx.params;
    const candidates = awqGrid(duo, nGrid);
    const { src, state } = await openLayerInput(ctx, layer);
    try {
      const cfg = src.config;
      const layerSpec = src.arch.layer(cfg, layer);
      const linears = layerSpec.linears;
      const hidden = await readHidden(input(ctx, 'hidden').dir);
      const stats = input(ctx, 'stats').dir;
      const actQuant = actQuantOf(state.quant);
      const report: Json[] = [];
      for (const [i, m] of mappings.entries()) {
        checkSmoothable(state, m);
        const site = mappingSite(m, linears);
        const args = searchArgs(m, modules, layerSpec);
        const searched = m.balance.filter((b) => args[b]);
        if (searched.length === 0) {
          report.push({ smooth: m.smooth, balance: [...m.balance], skipped: 'no balance layer is quantized' });
          ctx.progress(i + 1, mappings.length + 1, m.smooth);
          continue;
        }
        const parent = { ...parentOf(m, linears), balance: searched };
        const balance: BalanceWeight[] = searched.map((b) => ({ weight: weightMatrix(state.tensors, b, layer), args: args[b]! }));
        const problem: LossProblem = { rt: ctx.runtime, layer, cfg, layerSpec, tensors: state.tensors, hidden, parent, site, args, actQuant };
        const xMean = await readStatistic(stats, m.balance[0]!, 'absmean');
        if (xMean.length !== balance[0]!.weight.cols) {
          throw new SmoothingStepError('bad-mapping', `layer ${layer}: the captured mean |X| of ${m.balance[0]} has ${xMean.length} channels but the balance weights have ${balance[0]!.weight.cols} input channels`);
        }
        const result = await awqSearch({
          xMean,
          ...(duo !== false ? { wMean: weightMeans(balance) } : {}),
          candidates,
          losses: (scales, K) => candidateLosses(problem, scales, K),
        });
        foldScales(state.tensors, m, result.scales, layer, cfg.features.normOffset);
        report.push({
          smooth: m.smooth,
          balance: [...m.balance],
          parent: parent.kind,
          ratio: result.best.ratio,
          duo_scaling: result.best.duo,
          scale: { ...summarizeScales(result.scales) },
          loss: result.loss,
          identity_loss: result.identityLoss ?? null,
        });
        ctx.progress(i + 1, mappings.length + 1, m.smooth);
      }
      await roundToStoredDtypes(src, state);
      const quantized: Record<string, Json> = {};
      const scaleDtypes = await scaleDtypesOf(src, layer, Object.keys(modules));
      for (const [local, module] of Object.entries(modules)) {
        const w = weightMatrix(state.tensors, local, layer);
        const gguf = ggufModule(module, w.cols);
        if (gguf) {
          // ggml's reference quantizer on the smoothed weight: the rounding the search scored, the file's bytes
          if ('skip' in gguf) quantized[local] = { skipped: gguf.skip };
          else {
            const q = quantizeGgufRtn(gguf.type, w.data, w.rows, w.cols);
            quantized[local] = { weight_error: relativeError(w.data, q.dequantized), gguf: gguf.type, ...(gguf.note ? { note: gguf.note } : {}) };
            setQuantizedGguf(state, local, q, gguf.module);
          }
          continue;
        }
        const q = await quantizeWeightRtn(w.data, w.rows, w.cols, module.weights, { runtime: ctx.runtime, scaleDtype: scaleDtypes.get(local) ?? 'float32' });
        quantized[local] = { weight_error: relativeError(w.data, q.dequantized) };
        setQuantized(state, local, w.rows, w.cols, q, module);
      }
      ctx.progress(mappings.length + 1, mappings.length + 1, 'quantized');
      await writeLayerState(ctx.outDir, state);
      const result: Record<string, Json> = { layer, duo_scaling: duo, n_grid: nGrid, candidates: candidates.length, mappings: report, modules: quantized };
      if (Object.keys(modules).length === 0) result['search_scheme'] = 'W4A16_ASYM';
      return result;
    } finally {
      await src.close();
    }
  },
};
