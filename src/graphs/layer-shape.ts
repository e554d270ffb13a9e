// The memo key of a decoder layer's graph: everything the graph builder reads from the config and the layer's
// Linears and norms. Two layers with equal keys share one onnxruntime session (their weights and rope tables
// are inputs); a dense and an expert layer of the same model, or a llama and a qwen3 layer, do not.

import type { LinearSpec, NormSpec } from '../model/arch.js';
import type { ModelConfig } from '../model/config.js';

export function layerShapeKey(cfg: ModelConfig, linears: readonly LinearSpec[], norms: readonly NormSpec[]): string {
  const shape = [cfg.hiddenSize, cfg.numHeads, cfg.numKvHeads, cfg.headDim, cfg.rmsNormEps];
  const lin = linears.map((l) => `${l.local}=${l.role}${l.expert ?? ''}:${l.outFeatures}x${l.inFeatures}${l.bias ? 'b' : ''}`).join(',');
  // local attention lives in the inputs (rope tables, mask), not in the graph
  const { local: _local, ...graphFeatures } = cfg.features;
  return `${shape.join(':')}:${JSON.stringify(graphFeatures)}:${lin}:${norms.map((n) => n.local).join(',')}`;
}
