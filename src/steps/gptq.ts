// Step `gptq`: one decoder layer of a GPTQ stage. (1) Run the layer as the previous stage left it over its
// calibration inputs with a tap that reduces XᵀX per Linear input site inside onnxruntime (float64), so
// H = 2·XᵀX / n (n tokens) is accumulated in float64; q/k/v share attn_in, gate/up share mlp_in. (2) Quantize
// each targeted Linear with GPTQ, and with round-to-nearest on the same weights for comparison: the output
// errors ‖X(W − Q)ᵀ‖² = n/2 · tr((W − Q)·H·(W − Q)ᵀ) come cheaply from H. (3) Run the quantized layer (W8A8
// inputs fake-quantized per token) to produce the next layer's inputs.
// offload_hessians: one capture pass per site, each site's Hessian freed once its Linears are quantized, so
// no two Hessians are held at once (the layer runs once per site instead of once in all).

import { quantizeWeightRtn } from '../algo/fake-quant.js';
import { gptqQuantize, resolveActOrder, type GptqResult } from '../algo/gptq.js';
import type { ActOrder } from '../algo/scheme.js';
import type { Json } from '../cache/key.js';
import type { InputSite, LinearSpec } from '../model/arch.js';
import type { LayerTap } from '../model/layer-runner.js';
import { HfSource } from '../model/source.js';
import { gramOf, quadFormSum } from '../ort/kernels/linalg.js';
import { tensor, type Tensor } from '../tensor.js';
import { forEachBatch, layerBatch, propagate, readHidden, writeHidden } from './activations.js';
import { actQuantOf, loadLayerInput, writeLayerState, type ModuleQuant } from './layer-state.js';
import { setQuantized } from './quantized-module.js';
import { input, optionalInput, requireModel, type StepContext, type StepImpl } from './types.js';

export interface GptqParams {
  layer: number;
  modules: Record<string, ModuleQuant>;
  block_size: number;
  dampening_frac: number;
  actorder: ActOrder | null;
  offload_hessians: boolean;
}

interface Timing {
  capture: number;
  hessian: number;
  quantize: number;
  metrics: number;
  propagate: number;
}

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

function xtxTap(sites: readonly InputSite[], width: (s: InputSite) => number): LayerTap {
  return {
    key: `gptq-xtx:${sites.join(',')}`,
    build: (g, v) => Object.fromEntries(sites.map((s) => [`xtx.${s}`, gramOf(g, v.sites[s], width(s))])),
  };
}

/** relative output errors of GPTQ and round-to-nearest: tr(D·H·Dᵀ) / tr(W·H·Wᵀ) */
async function outputErrors(ctx: StepContext<GptqParams>, w: Float32Array, rows: number, cols: number, h: Tensor<'float64'>, gptq: Float32Array, rtn: Float32Array): Promise<{ gptq: number; rtn: number }> {
  const quad = (sub?: Float32Array): Promise<number> =>
    quadFormSum(ctx.runtime, rows, cols, h, (r, out) => {
      for (let c = 0; c < cols; c++) out[c] = (w[r * cols + c] as number) - (sub ? (sub[r * cols + c] as number) : 0);
    });
  const energy = await quad();
  const rel = async (q: Float32Array): Promise<number> => (energy > 0 ? (await quad(q)) / energy : 0);
  return { gptq: await rel(gptq), rtn: await rel(rtn) };
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

export const gptqStep: StepImpl<GptqParams> = {
  kind: 'gptq',
  version: 1,
  async run(ctx) {
    const p = ctx.params;
    const src = await HfSource.open(requireModel(ctx));
    try {
      const cfg = src.config;
      const linears = src.arch.linears(cfg);
      const prefix = src.arch.layerPrefix(p.layer);
      const state = await loadLayerInput(src, optionalInput(ctx, 'state'), p.layer);
      const hidden = await readHidden(input(ctx, 'hidden').dir);
      const [N, T] = hidden.dims as [number, number, number];
      const tokens = N * T;
      const bySite = sitesOf(linears, p.modules, p.layer);
      const sites = [...bySite.keys()];
      const width = (s: InputSite): number => (bySite.get(s)?.[0] as LinearSpec).inFeatures;
      // capture reads the weights as they came in, whatever was quantized since
      const weightsIn = { ...state.tensors };
      const actQuantIn = actQuantOf(state.quant);
      const batches = Math.ceil(N / layerBatch(cfg, T));
      const moduleCount = Object.keys(p.modules).length;
      const total = (p.offload_hessians ? sites.length : 1) * batches + moduleCount + batches;
      let done = 0;
      const tick = (message: string): void => ctx.progress(++done, total, message);
      const timing: Timing = { capture: 0, hessian: 0, quantize: 0, metrics: 0, propagate: 0 };
      const warnings: string[] = [];
      const warn = (m: string): void => {
        warnings.push(m);
        ctx.warn(m);
      };

      const capture = async (which: readonly InputSite[]): Promise<Map<InputSite, Float64Array>> => {
        const acc = new Map(which.map((s) => [s, new Float64Array(width(s) ** 2)] as const));
        let addMs = 0;
        const t0 = performance.now();
        await forEachBatch(ctx.runtime, cfg, linears, weightsIn, hidden, { tap: xtxTap(which, width), skipOut: true, actQuant: actQuantIn }, (out) => {
          const a0 = performance.now();
          for (const [s, h] of acc) {
            const part = out[`xtx.${s}`]?.data as Float64Array;
            for (let i = 0; i < h.length; i++) h[i] = (h[i] as number) + (part[i] as number);
          }
          addMs += performance.now() - a0;
          tick(`capture ${which.join(', ')}`);
        });
        const a0 = performance.now();
        for (const h of acc.values()) for (let i = 0; i < h.length; i++) h[i] = ((h[i] as number) * 2) / tokens;
        addMs += performance.now() - a0;
        timing.capture += performance.now() - t0 - addMs;
        timing.hessian += addMs;
        return acc;
      };

      const results: Record<string, Json> = {};
      const held = p.offload_hessians ? undefined : await capture(sites);
      for (const site of sites) {
        const h = held ? (held.get(site) as Float64Array) : ((await capture([site])).get(site) as Float64Array);
        held?.delete(site);
        for (const spec of bySite.get(site) ?? []) {
          ctx.signal.throwIfAborted();
          const local = spec.local;
          const module = p.modules[local] as ModuleQuant;
          const name = `${prefix}${local}`;
          const w = state.tensors[`${local}.weight`];
          if (!w) throw new Error(`gptq layer ${p.layer}: no weight ${local}.weight in the layer state`);
          const [rows, cols] = w.dims as [number, number];
          const order = resolveActOrder(p.actorder, module.weights);
          if (order.warning) warn(`${name}: ${order.warning}`);
          const r = await gptqQuantize(w.data, rows, cols, h, module.weights, {
            runtime: ctx.runtime,
            blockSize: p.block_size,
            dampeningFrac: p.dampening_frac,
            actorder: order.actorder,
            name,
          });
          timing.hessian += r.timing.inverseMs;
          timing.quantize += r.timing.solveMs;
          const dw = dampeningWarning(name, p.dampening_frac, r);
          if (dw) warn(dw);
          const t0 = performance.now();
          const rtn = await quantizeWeightRtn(w.data, rows, cols, module.weights, { runtime: ctx.runtime });
          const err = await outputErrors(ctx, w.data, rows, cols, tensor('float64', [cols, cols], h), r.dequantized, rtn.dequantized);
          timing.metrics += performance.now() - t0;
          setQuantized(state, local, rows, cols, r, { ...module, weights: { ...module.weights, actorder: order.recorded } });
          results[local] = {
            gptq_error: err.gptq,
            rtn_error: err.rtn,
            gptq_loss: r.loss,
            dampening_frac: r.dampening.frac,
            dampening: r.dampening.value,
            dampening_tried: [...r.dampening.tried],
            rtn_fallback: r.dampening.fallback,
            actorder: order.actorder,
            dead_columns: r.deadColumns,
          };
          tick(`quantized ${local}`);
        }
      }

      ctx.signal.throwIfAborted();
      const t0 = performance.now();
      const next = await propagate(ctx.runtime, cfg, linears, state.tensors, hidden, actQuantOf(state.quant), () => tick('propagate'));
      timing.propagate = performance.now() - t0;
      await writeHidden(ctx.outDir, next);
      await writeLayerState(ctx.outDir, state);
      const ms = (v: number): number => Math.round(v * 10) / 10;
      return {
        layer: p.layer,
        samples: N,
        tokens,
        hessian_passes: held ? 1 : sites.length,
        modules: results,
        timing_ms: { capture: ms(timing.capture), hessian: ms(timing.hessian), quantize: ms(timing.quantize), metrics: ms(timing.metrics), propagate: ms(timing.propagate) },
        warnings,
      };
    } finally {
      await src.close();
    }
  },
};
