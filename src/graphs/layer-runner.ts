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
}

function kernelKey(cfg: ModelConfig, layer: LayerSpec, o: LayerRunOptions): string {
  const aq = actQuantKey(o.actQuant);
  return `decoder:${layerShapeKey(cfg, layer.linears, layer.norms)}:${aq}:${o.tap?.key ?? ''}:${o.skipOut ? 'no-out' : 'out'}`;
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
  if (!options.tap && !options.skipOut && needsChunking(cfg, B, T0)) {
    return { out: await runLayerChunked(rt, cfg, layer, weights, x, options.actQuant ?? new Map()) };
  }
  const kernel = await rt.kernel(kernelKey(cfg, layer, options), () => {
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
  });
  const T = x.dims[1] as number;
  const feeds: Record<string, Tensor> = { x, ...positionInputs(cfg, layer.attention, T) };
  for (const name of kernel.inputNames) {
    if (name in feeds) continue;
    const t = weights[name];
    if (!t) throw new Error(`decoder layer: weight "${name}" missing (have ${Object.keys(weights).join(', ')})`);
    feeds[name] = t;
  }
  return kernel.run(feeds);
}
