// Step `awq`: activation-aware scaling of one decoder layer, then (when the stage has a scheme) quantization.
// Mappings run in order; each grid-searches scales on the layer's calibration inputs, measuring its parent
// module's output error in batched onnxruntime graphs (awq-search.ts, graphs/awq-kernel.ts), and folds the best
// before the next mapping is searched. Memory stays bounded: candidates are evaluated in groups whose weights
// fit a budget, and calibration tokens in chunks. Without a scheme (a later stage quantizes) the search
// quantizes as W4A16_ASYM (llm-awq's default q_config: int4, zero point, group 128) and the layer is left
// unquantized. With `mapping` and input `partials` (recipe parallel.calibration_shards K > 1) the step searches
// that one mapping from its K awq-loss shards' sums instead of the activations; the last mapping's step quantizes.
// GGUF schemes (Q8_0, Q4_0, Q4_1, Q5_0): candidates are scored with ggml's block quantizer as graph ops
// (graphs/gguf-fake-quant.ts, float16 block scales) and the smoothed weights quantized by ggml's reference
// quantizer, the same rounding, so the gguf output packs exactly what the search scored.

import { awqGrid, awqSearch, type AwqSearchResult, type DuoScaling } from '../algo/awq.js';
import { quantizeWeightRtn } from '../algo/fake-quant.js';
import { summarizeScales } from '../algo/smoothquant.js';
import type { Json } from '../cache/key.js';
import type { Mapping } from '../model/arch.js';
import type { HfSource } from '../model/source.js';
import type { ModuleQuant } from '../quant/module-quant.js';
import { quantizeGgufRtn } from '../quant/gguf-weight.js';
import { releaseAwqKernels } from '../graphs/awq-kernel.js';
import { readHidden } from './activations.js';
import { scalesDigest, sumLossPartials } from './awq-partials.js';
import { candidateLosses, gramSums, mappingSearch, parentWidth, type LossProblem, type MappingSearch } from './awq-search.js';
import { actQuantOf, openLayerInput, roundToStoredDtypes, scaleDtypesOf, writeLayerState, type LayerState } from './layer-state.js';
import { ggufModule, relativeError, setQuantized, setQuantizedGguf } from './quantized-module.js';
import { foldScales, SmoothingStepError, weightMatrix } from './smoothing.js';
import { input, inputList, optionalInput, type StepContext, type StepImpl } from './types.js';

export interface AwqParams {
  layer: number;
  /** targeted Linears and their quantization; empty: fold the scales only */
  modules: Record<string, ModuleQuant>;
  mappings: Mapping[];
  duo_scaling: DuoScaling;
  n_grid: number;
  /**
   * with input `partials` (parallel.calibration_shards > 1): search only `mappings[mapping]`, from its awq-loss
   * shards, on the input state (earlier mappings folded); the last mapping's step quantizes. Absent: every mapping
   * from the activations (input `hidden`), then quantize
   */
  mapping?: number;
}

/** the one-pass losses from a mapping's awq-loss shards: their sums added in shard order, scored as one pass scores them */
async function shardLosses(dirs: readonly string[], p: LossProblem, scales: Float32Array, K: number): Promise<Float64Array> {
  const width = parentWidth(p);
  if (p.parent.kind === 'linear') {
    const cols = scales.length / K;
    const { sums, tokens } = await sumLossPartials(dirs, 'gram', cols * cols, '');
    const sse = await gramSums(p, Float32Array.from(sums), scales, K);
    return sse.map((v) => v / (tokens * width));
  }
  const { sums, tokens } = await sumLossPartials(dirs, 'sse', K, scalesDigest(scales));
  return sums.map((v) => v / (tokens * width));
}

function mappingReport(m: Mapping, search: MappingSearch, result: AwqSearchResult): Json {
  return {
    smooth: m.smooth,
    balance: [...m.balance],
    parent: search.problem.parent.kind,
    ratio: result.best.ratio,
    duo_scaling: result.best.duo,
    scale: { ...summarizeScales(result.scales) },
    loss: result.loss,
    identity_loss: result.identityLoss ?? null,
  };
}

/** the reports of the mappings an earlier awq step of the same layer searched (its `mappings` metric) */
function earlierReports(ctx: StepContext<AwqParams>): Json[] {
  const r = optionalInput(ctx, 'state')?.result;
  const list = r && typeof r === 'object' && !Array.isArray(r) ? r['mappings'] : undefined;
  return Array.isArray(list) ? [...list] : [];
}

/** round to the stored dtypes and quantize the targeted Linears (what the search scored) */
async function quantizeLayer(ctx: StepContext<AwqParams>, src: HfSource, state: LayerState): Promise<Record<string, Json>> {
  const { layer, modules } = ctx.params;
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
  return quantized;
}

export const awqStep: StepImpl<'awq', AwqParams> = {
  kind: 'awq',
  async run(ctx) {
    const { layer, modules, mappings, duo_scaling: duo, n_grid: nGrid, mapping } = ctx.params;
    const candidates = awqGrid(duo, nGrid);
    const partials = inputList(ctx, 'partials').map((p) => p.dir);
    if ((mapping === undefined) !== (partials.length === 0) || (mapping !== undefined && !mappings[mapping])) {
      throw new SmoothingStepError('bad-mapping', `awq layer ${layer}: mapping ${mapping ?? 'none'} of ${mappings.length} with ${partials.length} loss shards; expected a mapping index with its shards, or neither`);
    }
    const { src, state } = await openLayerInput(ctx, layer);
    try {
      const cfg = src.config;
      const layerSpec = src.arch.layer(cfg, layer);
      const setup = { rt: ctx.runtime, layer, cfg, layerSpec, state, stats: input(ctx, 'stats').dir, modules, duo, actQuant: actQuantOf(state.quant) };
      const hidden = mapping === undefined ? await readHidden(input(ctx, 'hidden').dir) : undefined;
      const which = mapping === undefined ? [...mappings.keys()] : [mapping];
      const report: Json[] = mapping !== undefined && mapping > 0 ? earlierReports(ctx) : [];
      const total = which.length + 1;
      for (const [n, i] of which.entries()) {
        const m = mappings[i]!;
        const search = await mappingSearch(setup, m);
        if (!search) report.push({ smooth: m.smooth, balance: [...m.balance], skipped: 'no balance layer is quantized' });
        else {
          const result = await awqSearch({
            xMean: search.xMean,
            ...(search.wMean ? { wMean: search.wMean } : {}),
            candidates,
            losses: (scales, K) => (hidden ? candidateLosses(search.problem, hidden, scales, K) : shardLosses(partials, search.problem, scales, K)),
          });
          await releaseAwqKernels(ctx.runtime);
          foldScales(state.tensors, m, result.scales, layer, cfg.features.normOffset);
          report.push(mappingReport(m, search, result));
        }
        ctx.progress(n + 1, total, m.smooth);
      }
      const result: Record<string, Json> = { layer, duo_scaling: duo, n_grid: nGrid, candidates: candidates.length };
      if (mapping !== undefined) Object.assign(result, { mapping, shards: partials.length });
      result['mappings'] = report;
      if (mapping !== undefined && mapping < mappings.length - 1) {
        // an earlier mapping of a sharded search: the next mapping's shards read the folded, unrounded layer
        await writeLayerState(ctx.outDir, state);
        return result;
      }
      result['modules'] = await quantizeLayer(ctx, src, state);
      ctx.progress(total, total, 'quantized');
      await writeLayerState(ctx.outDir, state);
      if (Object.keys(modules).length === 0) result['search_scheme'] = 'W4A16_ASYM';
      return result;
    } finally {
      await src.close();
    }
  },
};
