// Static input ranges (compressed-tensors static activations with the static_minmax observer): FP8's
// per-tensor `input_scale` and NVFP4's `input_global_scale`, from the largest |x| each Linear's input reaches
// over every calibration token. The layer runs over its calibration inputs with a tap that reduces max |x|
// per input site inside onnxruntime; the scales become layer tensors `<local>.input_scale` /
// `<local>.input_global_scale`, which the decoder graphs read like weights and the pack step writes.
//   FP8    input_scale = max(m / 448, fp32 eps)          (calculate_qparams, symmetric; in the stored dtype)
//   NVFP4  input_global_scale = 448 · 6 / m, 1 when m = 0 (generate_gparam)

import type { Graph, Value } from '../ort/graph.js';
import type { LayerTap } from '../graphs/layer-runner.js';
import type { InputSite, LinearSpec } from '../model/arch.js';
import { computeQParams, nvfp4GlobalScale, type ScaleDtype } from '../quant/qparams.js';
import { staticInputTensor, type ModuleQuant } from '../quant/module-quant.js';
import { tensor, type Tensor } from '../tensor.js';
import type { LayerState } from './layer-state.js';

/** the input sites whose ranges `modules` need: those of Linears with static input quantization */
export function staticSites(linears: readonly LinearSpec[], modules: Readonly<Record<string, ModuleQuant>>): InputSite[] {
  const sites = new Set<InputSite>();
  for (const l of linears) {
    const a = modules[l.local]?.input_activations;
    if (a && staticInputTensor(a)) sites.add(l.site);
  }
  return [...sites].sort();
}

/** `tap` plus `range.<site>`: max |x| of each site's activations in the batch */
export function withRanges(tap: LayerTap | undefined, sites: readonly InputSite[]): LayerTap | undefined {
  if (sites.length === 0) return tap;
  return {
    key: `${tap?.key ?? ''}+ranges:${sites.join(',')}`,
    build: (g: Graph, v) => {
      const out: Record<string, Value> = { ...(tap?.build(g, v) ?? {}) };
      for (const s of sites) out[`range.${s}`] = g.op('ReduceMax', [g.op('Abs', [v.sites[s]])], { keepdims: 0 });
      return out;
    },
  };
}

/** fold one batch's `range.<site>` outputs into `acc` */
export function addRanges(acc: Map<InputSite, number>, out: Readonly<Record<string, Tensor>>, sites: readonly InputSite[]): void {
  for (const s of sites) {
    const v = (out[`range.${s}`]?.data as Float32Array | undefined)?.[0];
    if (v === undefined) throw new Error(`static input ranges: the layer run returned no range.${s}`);
    acc.set(s, Math.max(acc.get(s) ?? 0, v));
  }
}

/** the static scale tensors of every module with static input quantization, into the layer's tensors */
export function setStaticInputScales(
  state: LayerState,
  linears: readonly LinearSpec[],
  modules: Readonly<Record<string, ModuleQuant>>,
  ranges: ReadonlyMap<InputSite, number>,
  scaleDtypes: ReadonlyMap<string, ScaleDtype> = new Map(),
): Record<string, number> {
  const report: Record<string, number> = {};
  for (const l of linears) {
    const a = modules[l.local]?.input_activations;
    const suffix = a ? staticInputTensor(a) : undefined;
    if (!a || !suffix) continue;
    const m = ranges.get(l.site);
    if (m === undefined) throw new Error(`static input ranges: no range recorded for ${l.local} (site ${l.site})`);
    const value = suffix === 'input_global_scale' ? nvfp4GlobalScale(-m, m) : (computeQParams(Float32Array.of(-m), Float32Array.of(m), a, undefined, scaleDtypes.get(l.local)).scale[0] as number);
    state.tensors[`${l.local}.${suffix}`] = tensor('float32', [1], Float32Array.of(value));
    report[`${l.local}.${suffix}`] = value;
  }
  return report;
}

/**
 * Linears of the layer grouped by the input they read and the module they belong to (the ones vLLM fuses
 * into one GEMM): q/k/v, and gate/up of the dense MLP or of each expert (llm-compressor fuses per MLP module);
 * an MoE router reads the same input but is fused with nothing
 */
export function siblingsBySite(linears: readonly LinearSpec[]): string[][] {
  const by = new Map<string, string[]>();
  for (const l of linears) {
    if (l.role === 'router') continue;
    const key = `${l.site}:${l.expert ?? ''}`;
    by.set(key, [...(by.get(key) ?? []), l.local]);
  }
  return [...by.values()];
}
