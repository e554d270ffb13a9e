// Runs one decoder layer on a batch of hidden states through a memoised onnxruntime session. Callers may add
// "taps": extra graph outputs computed from the layer's internal activations (GPTQ's XᵀX, SmoothQuant's
// per-channel maxima ...), so statistics are reduced inside onnxruntime instead of crossing into JS.

import { Graph, type Value } from '../ort/graph.js';
import type { Runtime } from '../ort/session.js';
import type { Tensor } from '../tensor.js';
import type { LayerSpec } from '../model/arch.js';
import { actQuantKey, type ActQuant } from '../quant/module-quant.js';
import type { ModelConfig } from '../model/config.js';
import { decoderLayer, layerWeightInputs, type DecoderValues } from './decoder-graph.js';
import { layerShapeKey } from './layer-shape.js';
import { positionInputs } from './rope.js';
import { needsChunking, runLayerChunked } from './chunked-layer.js';
import { fusedDecoderLayer, fusedLayerSupport, fusedPositionInputs, fusedRotary } from './fused-layer.js';

export interface LayerTap {
  /** part of the kernel's memo key: different taps are different graphs */
  key: string;
  build(g: Graph, v: DecoderValues): Record<string, Value>;
}

export interface LayerRunOptions {
  actQuant?: ActQuant;
  tap?: LayerTap;
  /** leave out the layer output when only taps are needed */
  skipOut?: boolean;
  /**
   * the layer from onnxruntime's fused kernels (fused-layer.ts: faster, equal up to float32 rounding), when the
   * head size allows; default true (evaluation). false: the basic-op reference graph, which calibration always
   * runs (steps/activations.ts forEachBatch)
   */
  fused?: boolean;
  /** false: onnxruntime's threads sleep between calls instead of spinning (KernelOptions.spin); default true */
  spin?: boolean;
  /** outputs written into these tensors (reused across calls) instead of new arrays */
  into?: Readonly<Record<string, Tensor>>;
}

function kernelKey(cfg: ModelConfig, layer: LayerSpec, o: LayerRunOptions): string {
  const aq = actQuantKey(o.actQuant);
  return `decoder${o.fused ? '-fused' : ''}:${layerShapeKey(cfg, layer.linears, layer.norms)}:${aq}:${o.tap?.key ?? ''}:${o.skipOut ? 'no-out' : 'out'}`;
}

function fusedKernelGraph(cfg: ModelConfig, layer: LayerSpec, o: LayerRunOptions): Graph {
  const g = new Graph('decoder_layer_fused');
  const half = cfg.headDim / 2;
  const values = fusedDecoderLayer(g, cfg, layer, {
    x: g.input('x', 'float32', ['B', 'T', cfg.hiddenSize]),
    cosCache: g.input('cos_cache', 'float32', ['P', half]),
    sinCache: g.input('sin_cache', 'float32', ['P', half]),
    seqlensK: g.input('seqlens_k', 'int32', ['B']),
    totalLength: g.input('total_length', 'int32', []),
    ...(fusedRotary(cfg) === 'separate' ? { positionIds: g.input('position_ids', 'int64', [1]) } : {}),
    weights: layerWeightInputs(g, layer.norms, layer.linears),
  }, o.actQuant ? { actQuant: o.actQuant } : {});
  if (!o.skipOut) g.output(values.out, 'out');
  for (const [name, v] of Object.entries(o.tap?.build(g, values) ?? {})) g.output(v, name);
  return g;
}

/** run layer weights (local name → tensor) over hidden states `[B, T, H]`; returns `out` plus tap outputs */
export async function runDecoderLayer(
  rt: Runtime,
  cfg: ModelConfig,
  layer: LayerSpec,
  weights: Readonly<Record<string, Tensor>>,
  x: Tensor<'float32'>,
  options: LayerRunOptions = {},
): Promise<Record<string, Tensor>> {
  const [B, T0] = x.dims as [number, number];
  // layers the fused kernels cannot compute exactly (head sizes GroupQueryAttention cannot take, q/k norms,
  // (1 + w) norms, sliding windows, experts …: fusedLayerSupport) run the basic-op layer, and so does every layer
  // on the WebGPU provider, whose GroupQueryAttention is ~1e-2 off on windows of 32 positions or more
  options = { ...options, fused: (options.fused ?? true) && rt.device !== 'webgpu' && fusedLayerSupport(cfg, layer) !== undefined };
  if (!options.fused && !options.tap && !options.skipOut && needsChunking(cfg, B, T0)) {
    return { out: await runLayerChunked(rt, cfg, layer, weights, x, options.actQuant ?? new Map()) };
  }
  const kernel = await rt.kernel(kernelKey(cfg, layer, options), () => {
    if (options.fused) return fusedKernelGraph(cfg, layer, options);
    const g = new Graph('decoder_layer');
    const inputs = {
      x: g.input('x', 'float32', ['B', 'T', cfg.hiddenSize]),
      cos: g.input('cos', 'float32', ['T', cfg.headDim]),
      sin: g.input('sin', 'float32', ['T', cfg.headDim]),
      mask: g.input('mask', 'float32', ['T', 'T']),
      weights: layerWeightInputs(g, layer.norms, layer.linears),
    };
    const values = decoderLayer(g, cfg, layer.linears, inputs, options.actQuant ? { actQuant: options.actQuant } : {});
    if (!options.skipOut) g.output(values.out, 'out');
    for (const [name, v] of Object.entries(options.tap?.build(g, values) ?? {})) g.output(v, name);
    return g;
  }, options.spin === false ? { spin: false } : {});
  const T = x.dims[1] as number;
  const feeds: Record<string, Tensor> = { x, ...(options.fused ? fusedPositionInputs(cfg, B, T) : positionInputs(cfg, layer.attention, T)) };
  for (const name of kernel.inputNames) {
    if (name in feeds) continue;
    const t = weights[name];
    if (!t) throw new Error(`decoder layer: weight "${name}" missing (have ${Object.keys(weights).join(', ')})`);
    feeds[name] = t;
  }
  return kernel.run(feeds, undefined, options.into);
}
