// Step `gptq`: one decoder layer of a GPTQ stage. (1) Run the layer as the previous stage left it over its
// calibration inputs with a tap that reduces XᵀX per Linear input site inside onnxruntime (gptq-job.ts:
// float32 per batch of ~2048 tokens, as llm-compressor accumulates H), so H = 2·XᵀX / n (n tokens) is summed
// over batches in float64; q/k/v share attn_in, gate/up share mlp_in, and so do their damped inverse factors. (2) Quantize
// each targeted Linear with GPTQ, and with round-to-nearest on the same weights for comparison: the output
// errors ‖X(W − Q)ᵀ‖² = n/2 · tr((W − Q)·H·(W − Q)ᵀ) come cheaply from H, and GPTQ's from its own solve. (3) Run the quantized layer (W8A8
// inputs fake-quantized as their scheme says) to produce the next layer's inputs. Static input ranges (FP8,
// NVFP4) are reduced in the same capture passes (static-inputs.ts); NVFP4 global scales are fixed from the
// incoming weights before any column pass, shared by Linears that read the same input (llm-compressor).
// Memory: a site's inverse factor is written into its Hessian's own buffer (quantizeSiteOverwriting), and on
// layers with large attention scores the capture runs one window at a time (gptq-job.ts splitGrams), both bitwise.
// offload_hessians: one capture pass per site, each site's Hessian freed once its Linears are quantized, so
// no two Hessians are held at once (the layer runs once per site instead of once in all).
// Mixture-of-Experts layers: every expert's Hessians come from every token (steps/experts.ts); the first capture
// pass also counts the tokens the router sends each expert, and an expert it sends none is reported with its
// rule ("all-tokens").
// Input `partials` (recipe parallel.calibration_shards > 1): gptq-hessian shard steps captured XᵀX over
// disjoint window ranges; (1) sums them instead of capturing (hessian-partials.ts).

import { sharedGlobalScales } from '../algo/fake-quant.js';
import { setStaticInputScales, siblingsBySite, staticSites } from './static-inputs.js';
import { gptqFactor, gptqQuantize, resolveActOrder, type GptqFactor, type GptqOptions, type GptqResult } from '../algo/gptq.js';
import type { ActOrder } from '../quant/scheme.js';
import { spillHessian } from './hessian-spill.js';
import { rtnErrors, rtnWeight, solvedMetrics, type RtnErrors } from './gptq-metrics.js';
import type { Json } from '../cache/key.js';
import type { InputSite, LinearSpec } from '../model/arch.js';
import type { Tensor } from '../tensor.js';
import { layerBatch, propagate, readHidden, writeHidden } from './activations.js';
import { actQuantOf, openLayerInput, scaleDtypesOf, writeLayerState } from './layer-state.js';
import type { ModuleQuant } from '../quant/module-quant.js';
import { ggufModule, setQuantized, setQuantizedGguf } from './quantized-module.js';
import { gptqQuantizeGguf } from '../algo/gptq-gguf.js';
import { quantizeGgufRtn } from '../quant/gguf-weight.js';
import type { GgufBlockTypeName } from '../quant/gguf-quantize.js';
export type { GptqParams } from './gptq-job.js';
import { input, inputList, type StepImpl } from './types.js';
import { hessiansOf, warn, type GptqParams, type LayerJob } from './gptq-job.js';
import { expertReport, RoutedTokens } from './experts.js';


/** per input site, the targeted Linears reading it, in the layer's order */
function sitesOf(linears: readonly LinearSpec[], modules: Record<string, ModuleQuant>, layer: number): Map<InputSite, LinearSpec[]> {
  const known = new Set(linears.map((l) => l.local));
  const unknown = Object.keys(modules).filter((m) => !known.has(m));
  if (unknown.length > 0) {
    throw new Error(`gptq layer ${layer}: modules ${unknown.join(', ')} are not Linears of the layer; expected some of: ${[...known].join(', ')}`);
  }
  const out = new Map<InputSite, LinearSpec[]>();
  for (const l of linears) if (modules[l.local]) out.set(l.site, [...(out.get(l.site) ?? []), l]);
  return out;
}

function dampeningWarning(name: string, requested: number, r: GptqResult): string | undefined {
  const d = r.dampening;
  if (d.fallback) {
    return `${name}: the Hessian stayed singular with every dampening_frac tried (${d.tried.join(', ')}); fell back to round-to-nearest for this module`;
  }
  if (d.frac !== requested) {
    return `${name}: the Hessian is singular with dampening_frac ${requested}; used dampening_frac ${d.frac} (λ = ${d.value.toPrecision(4)}) instead`;
  }
  return undefined;
}

/** GPTQ on one Linear with its site's Hessian, rtn beside it for the metrics (`pre`: computed before h held U); the state gets the result */
async function quantizeModule(job: LayerJob, local: string, h: Float64Array, factors: Map<string, GptqFactor>, pre?: RtnErrors): Promise<Json> {
  const { ctx, state } = job;
  const p = ctx.params;
  const module = p.modules[local] as ModuleQuant;
  const name = `${job.prefix}${local}`;
  const w = state.tensors[`${local}.weight`];
  if (!w) throw new Error(`gptq layer ${p.layer}: no weight ${local}.weight in the layer state`);
  const [rows, cols] = w.dims as [number, number];
  const gguf = ggufModule(module, cols);
  if (gguf) return 'skip' in gguf ? { skipped: gguf.skip } : quantizeGgufModule(job, local, h, gguf);
  const order = resolveActOrder(p.actorder, module.weights);
  if (order.warning) warn(job, `${name}: ${order.warning}`);
  const options = moduleOptions(job, local, order.actorder);
  // Linears of one input share H, so its solve order and inverse factor (per act order)
  const key = String(order.actorder);
  let factor = factors.get(key);
  if (!factor) {
    factors.set(key, (factor = await gptqFactor(h, cols, order.actorder, options)));
    job.timing.hessian += factor.ms;
  }
  const r = await gptqQuantize(w.data, rows, cols, h, module.weights, options, factor);
  job.timing.hessian += r.timing.inverseMs;
  job.timing.quantize += r.timing.solveMs;
  const dw = dampeningWarning(name, p.dampening_frac, r);
  if (dw) warn(job, dw);
  const rtn = (): Promise<Float32Array> => rtnWeight(job, local);
  const metrics = await solvedMetrics(job, w, h, r.dequantized, rtn, r, factor.prepared.dead, pre);
  setQuantized(state, local, rows, cols, r, { ...module, weights: { ...module.weights, actorder: order.recorded } });
  return { ...metrics, actorder: order.actorder, dead_columns: r.deadColumns };
}

function moduleOptions(job: LayerJob, local: string, actorder: ActOrder | null): GptqOptions {
  const p = job.ctx.params;
  return {
    runtime: job.ctx.runtime,
    blockSize: p.block_size,
    dampeningFrac: p.dampening_frac,
    actorder,
    name: `${job.prefix}${local}`,
    ...(p.escalate_dampening === false ? { escalate: false } : {}),
    ...(job.globalScales.has(local) ? { globalScale: job.globalScales.get(local) as number } : {}),
    scaleDtype: job.scaleDtypes.get(local) ?? 'float32',
  };
}

/**
 * the site's Linears with one inverse factor written into H's own buffer (one in × in float64 matrix live, not
 * two): rtn's errors under H first, H set aside (hessian-spill.ts) for a failed dampening, then the factor and the
 * column solves. Only where every Linear of the site is solved onto integer or float grids with one act order;
 * undefined otherwise (GGUF blocks, mixed act orders), and the site goes module by module with H kept.
 */
async function quantizeSiteOverwriting(job: LayerJob, specs: readonly LinearSpec[], h: Float64Array): Promise<Record<string, Json> | undefined> {
  const p = job.ctx.params;
  const orders = specs.map((s) => resolveActOrder(p.actorder, (p.modules[s.local] as ModuleQuant).weights).actorder);
  if (new Set(orders).size !== 1 || specs.some((s) => ggufModule(p.modules[s.local] as ModuleQuant, s.inFeatures))) return undefined;
  const pre = new Map<string, RtnErrors>();
  for (const s of specs) pre.set(s.local, await rtnErrors(job, s.local, h));
  const first = specs[0] as LinearSpec;
  const factors = new Map<string, GptqFactor>();
  const spill = await spillHessian(h, job.ctx.outDir);
  try {
    const factor = await gptqFactor(h, first.inFeatures, orders[0] as ActOrder | null, moduleOptions(job, first.local, orders[0] as ActOrder | null), spill);
    factors.set(String(orders[0]), factor);
    job.timing.hessian += factor.ms;
  } finally {
    await spill.close();
  }
  const out: Record<string, Json> = {};
  for (const s of specs) {
    job.ctx.signal.throwIfAborted();
    out[s.local] = await quantizeModule(job, s.local, h, factors, pre.get(s.local));
    job.tick(`quantized ${s.local}`);
  }
  return out;
}

/** GPTQ onto GGUF blocks (qparams fixed at block entry, columns in order), ggml's rtn bytes beside it for the metrics */
async function quantizeGgufModule(job: LayerJob, local: string, h: Float64Array, gguf: { type: GgufBlockTypeName; module: ModuleQuant; note?: string }): Promise<Json> {
  const { ctx, state } = job;
  const p = ctx.params;
  const name = `${job.prefix}${local}`;
  const w = state.tensors[`${local}.weight`] as Tensor<'float32'>;
  const [rows, cols] = w.dims as [number, number];
  if (p.actorder === 'group') warn(job, `${name}: GGUF blocks are solved in column order; actorder "group" is not applied`);
  const r = await gptqQuantizeGguf(w.data, rows, cols, h, gguf.type, gguf.module.weights, {
    runtime: ctx.runtime,
    blockSize: p.block_size,
    dampeningFrac: p.dampening_frac,
    actorder: null,
    name,
    ...(p.escalate_dampening === false ? { escalate: false } : {}),
  });
  job.timing.hessian += r.timing.inverseMs;
  job.timing.quantize += r.timing.solveMs;
  const rtn = async (): Promise<Float32Array> => {
    const t0 = performance.now();
    const q = quantizeGgufRtn(gguf.type, w.data, rows, cols).dequantized;
    job.timing.metrics += performance.now() - t0;
    return q;
  };
  const dead = Uint8Array.from({ length: cols }, (_, c) => (h[c * cols + c] === 0 ? 1 : 0));
  const metrics = await solvedMetrics(job, w, h, r.weight.dequantized, rtn, r, dead);
  if (r.dampening.fallback) warn(job, `${name}: every dampening failed; the blocks were rounded to nearest`);
  setQuantizedGguf(state, local, r.weight, gguf.module);
  return {
    ...metrics,
    actorder: null,
    dead_columns: r.deadColumns,
    gguf: gguf.type,
    ...(gguf.note ? { note: gguf.note } : {}),
  };
}

export const gptqStep: StepImpl<'gptq', GptqParams> = {
  kind: 'gptq',
  async run(ctx) {
    const p = ctx.params;
    const { src, state } = await openLayerInput(ctx, p.layer);
    try {
      const cfg = src.config;
      const layer = src.arch.layer(cfg, p.layer);
      const linears = layer.linears;
      const hidden = await readHidden(input(ctx, 'hidden').dir);
      const [N, T] = hidden.dims as [number, number, number];
      const bySite = sitesOf(linears, p.modules, p.layer);
      const sites = [...bySite.keys()];
      const batches = Math.ceil(N / layerBatch(cfg, T));
      const total = (p.offload_hessians ? sites.length : 1) * batches + Object.keys(p.modules).length + batches;
      let done = 0;
      const job: LayerJob = {
        ctx,
        cfg,
        layer,
        prefix: src.arch.layerPrefix(p.layer),
        state,
        weightsIn: { ...state.tensors },
        actQuantIn: actQuantOf(state.quant),
        hidden,
        tokens: N * T,
        width: (s) => (bySite.get(s)?.[0] as LinearSpec).inFeatures,
        timing: { capture: 0, hessian: 0, quantize: 0, metrics: 0, propagate: 0 },
        warnings: [],
        routed: new RoutedTokens(),
        tick: (message) => ctx.progress(++done, total, message),
        staticSites: staticSites(linears, p.modules),
        ranges: new Map(),
        scaleDtypes: await scaleDtypesOf(src, p.layer, Object.keys(p.modules)),
        globalScales: sharedGlobalScales(
          Object.fromEntries(Object.entries(p.modules).map(([l, m]) => [l, { weight: state.tensors[`${l}.weight`]?.data ?? new Float32Array(0), args: m.weights }])),
          siblingsBySite(linears),
        ),
      };

      const modules: Record<string, Json> = {};
      const partials = inputList(ctx, 'partials').map((d) => d.dir);
      const held = p.offload_hessians ? undefined : await hessiansOf(job, sites, partials);
      // the one capture pass is over: each incoming weight is freed as its module is quantized
      if (held) job.weightsIn = {};
      for (const site of sites) {
        const h = (held ?? (await hessiansOf(job, [site], partials))).get(site) as Float64Array;
        held?.delete(site);
        const overwritten = await quantizeSiteOverwriting(job, bySite.get(site) ?? [], h);
        if (overwritten) {
          Object.assign(modules, overwritten);
          continue;
        }
        const factors = new Map<string, GptqFactor>();
        for (const spec of bySite.get(site) ?? []) {
          ctx.signal.throwIfAborted();
          modules[spec.local] = await quantizeModule(job, spec.local, h, factors);
          job.tick(`quantized ${spec.local}`);
        }
      }

      const inputScales = setStaticInputScales(state, linears, p.modules, job.ranges, job.scaleDtypes);
      ctx.signal.throwIfAborted();
      const t0 = performance.now();
      const experts = expertReport(p.layer, job.prefix, linears, Object.keys(p.modules), job.routed.counts, job.tokens, 'all-tokens');
      for (const w of experts?.warnings ?? []) warn(job, w);
      const next = await propagate(ctx.runtime, cfg, layer, state.tensors, hidden, actQuantOf(state.quant), () => job.tick('propagate'));
      job.timing.propagate = performance.now() - t0;
      await writeHidden(ctx.outDir, next);
      await writeLayerState(ctx.outDir, state);
      const ms = (v: number): number => Math.round(v * 10) / 10;
      const t = job.timing;
      return {
        layer: p.layer,
        samples: N,
        tokens: job.tokens,
        hessian_passes: held ? 1 : sites.length,
        modules,
        ...(experts ? { experts: experts.metrics } : {}),
        timing_ms: { capture: ms(t.capture), hessian: ms(t.hessian), quantize: ms(t.quantize), metrics: ms(t.metrics), propagate: ms(t.propagate) },
        warnings: job.warnings,
        ...(Object.keys(inputScales).length > 0 ? { input_scales: inputScales } : {}),
      };
    } finally {
      await src.close();
    }
  },
};
