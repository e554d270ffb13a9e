// The whole model as one ONNX graph with a KV cache, laid out as Optimum / transformers.js expect:
// inputs input_ids, attention_mask, position_ids, past_key_values.{i}.key|value; outputs logits and
// present.{i}.key|value. When onnxruntime's GroupQueryAttention takes the model's head size (fused-layer.ts),
// every layer is the fused layer: rotary tables are constants indexed by position, and GQA masks causally by
// each sequence's length (the attention_mask's sum): prompts padded on the right or not at all, as batch-1
// decoding feeds them. Its past and present may be one buffer of the maximum length (OnnxModel.generate uses
// that; transformers.js feeds past and takes present as usual). Otherwise rotary tables are computed in the graph
// from position_ids and the attention mask combines padding with causality over past + new positions.
// In the fused layers, int4 projections that read the same input are one MatMulNBits each, rows stacked
// (q/k/v → GroupQueryAttention's packed input, gate/up → Split): fewer ops per decoded token, same numbers. Each
// residual Add and the RMSNorm after it are one SkipSimplifiedLayerNormalization (fusedDecoderLayerTerms), whose
// normalisation rounds differently from SimplifiedLayerNormalization (the last bits move; BENCHMARKS.md, Decoding).

import type { ExternalData } from '../formats/onnx-file.js';
import type { QuantizedModule } from '../quant/module-quant.js';
import { Graph, type Value } from '../ort/graph.js';
import { tensor, type Tensor } from '../tensor.js';
import type { ArchAdapter, LayerAttention } from '../model/arch.js';
import type { ModelConfig, Rope } from '../model/config.js';
import { decoderLayer, rmsNorm, softcapped } from './decoder-graph.js';
import { fusedDecoderLayerTerms, fusedLayerSupport, fusedRotary, rotaryCaches, skipRmsNorm, type PackedProjections, type ResidualTerms } from './fused-layer.js';
import { exportLinear, exportPackedLinear, type ExportLinearOptions, type LinearWeights } from './export-linear.js';
import { inverseFrequencies } from './rope.js';

export interface ExportLayer {
  tensors: Record<string, Tensor<'float32'>>;
  quant: Record<string, QuantizedModule>;
}

export interface ExportSource {
  config: ModelConfig;
  arch: ArchAdapter;
  tensor(name: string): Promise<Tensor<'float32'>>;
  layer(l: number): Promise<ExportLayer>;
}

function positionTables(g: Graph, cfg: ModelConfig, rope: Rope, positionIds: Value, hint: string): { cos: Value; sin: Value } {
  const inv = Float32Array.from(inverseFrequencies(rope, cfg.headDim));
  const pos = g.op('Unsqueeze', [g.cast(positionIds, 'float32'), g.ints([-1])]); // [B, S, 1]
  const freqs = g.mul(pos, g.constant(tensor('float32', [inv.length], inv), hint)); // [B, S, hd/2]
  const emb = g.op('Unsqueeze', [g.op('Concat', [freqs, freqs], { axis: -1 }), g.ints([1])]); // [B, 1, S, hd]
  return { cos: g.op('Cos', [emb]), sin: g.op('Sin', [emb]) };
}

/**
 * additive mask [B, 1, 1, S, P+S]: 0 where a query may attend (causal, not padding, and for a sliding-window
 * layer less than `window` positions back), −1e30 elsewhere
 */
function attentionMask(g: Graph, attentionMask: Value, seqLen: Value, totalLen: Value, window: number | null): Value {
  const past = g.sub(totalLen, seqLen);
  const q = g.op('Unsqueeze', [g.op('Range', [past, totalLen, g.int(1)]), g.ints([1])]); // [S, 1]
  const k = g.op('Range', [g.int(0), totalLen, g.int(1)]); // [P+S]
  let causal = g.op('LessOrEqual', [k, q], {}, { dtype: 'bool' }); // [S, P+S]
  if (window !== null) causal = g.op('And', [causal, g.op('Greater', [k, g.sub(q, g.int(window))], {}, { dtype: 'bool' })], {}, { dtype: 'bool' });
  const pad = g.op('Unsqueeze', [g.cast(attentionMask, 'bool'), g.ints([1, 2, 3])]); // [B, 1, 1, 1, P+S]
  const allowed = g.op('And', [causal, pad], {}, { dtype: 'bool' });
  return g.op('Where', [allowed, g.scalar(0), g.scalar(-1e30)]);
}

/** GroupQueryAttention's length inputs from attention_mask [B, P+S]: per sequence length − 1, and the longest */
function gqaLengths(g: Graph, attentionMask: Value): { seqlensK: Value; totalLength: Value } {
  const lengths = g.reduceSum(attentionMask, [1], false); // [B] int64
  const seqlensK = g.cast(g.sub(lengths, g.int(1)), 'int32');
  const totalLength = g.cast(g.op('Squeeze', [g.op('Slice', [g.op('Shape', [attentionMask], {}, { dtype: 'int64' }), g.ints([1]), g.ints([2])]), g.ints([0])]), 'int32');
  return { seqlensK, totalLength };
}

/** each layer's rope tables and mask, built once per distinct rope and window (the global ones first) */
function layerInputs(g: Graph, cfg: ModelConfig, positionIds: Value, mask: (window: number | null) => Value): (a: LayerAttention) => { cos: Value; sin: Value; mask: Value } {
  const tables = new Map<string, { cos: Value; sin: Value }>();
  const masks = new Map<number | null, Value>();
  const of = (a: LayerAttention): { cos: Value; sin: Value; mask: Value } => {
    const key = JSON.stringify(a.rope);
    let t = tables.get(key);
    if (!t) tables.set(key, (t = positionTables(g, cfg, a.rope, positionIds, tables.size === 0 ? 'inv_freq' : 'inv_freq_local')));
    let m = masks.get(a.window);
    if (!m) masks.set(a.window, (m = mask(a.window)));
    return { ...t, mask: m };
  };
  of({ rope: { theta: cfg.ropeTheta, scaling: cfg.ropeScaling }, window: null });
  return of;
}

const QKV = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'];
const GATE_UP = ['mlp.gate_proj', 'mlp.up_proj'];

/** build the graph, streaming every weight into `data`; `onLayer` reports progress */
export async function buildExportGraph(src: ExportSource, data: ExternalData, o: ExportLinearOptions, onLayer?: (l: number) => void): Promise<Graph> {
  const { config: cfg, arch } = src;
  const g = new Graph('quantforge_export', { metadata: { producer: 'quantforge' } });
  const inputIds = g.input('input_ids', 'int64', ['batch_size', 'sequence_length']);
  const attn = g.input('attention_mask', 'int64', ['batch_size', 'total_sequence_length']);
  const positionIds = g.input('position_ids', 'int64', ['batch_size', 'sequence_length']);
  const kvShape = ['batch_size', cfg.numKvHeads, 'past_sequence_length', cfg.headDim];
  const emb = g.initializer(await data.tensor(arch.embedding, await src.tensor(arch.embedding)));
  let embedded = g.op('Gather', [emb, inputIds], { axis: 0 }, { dtype: 'float32' });
  if (cfg.features.embedScale !== 1) embedded = g.mul(embedded, g.scalar(cfg.features.embedScale));
  // the fused layers hand on their output as two terms, which the next norm adds (skipRmsNorm)
  let x: Value | ResidualTerms = embedded;
  const seqLen = g.op('Squeeze', [g.op('Slice', [g.op('Shape', [inputIds], {}, { dtype: 'int64' }), g.ints([1]), g.ints([2])]), g.ints([0])]);
  const totalLen = g.op('Squeeze', [g.op('Slice', [g.op('Shape', [attn], {}, { dtype: 'int64' }), g.ints([1]), g.ints([2])]), g.ints([0])]);
  const specs = Array.from({ length: cfg.numLayers }, (_, l) => arch.layer(cfg, l));
  // the fused layer for every layer or none: decoding shares one GroupQueryAttention KV buffer per layer
  // (graphs/onnx-model.ts), and layers it cannot compute exactly (fusedLayerSupport) need the basic-op graph
  const rotary = specs.every((s) => fusedLayerSupport(cfg, s) !== undefined) ? fusedRotary(cfg) : undefined;
  const caches = rotary ? rotaryCaches(cfg, cfg.maxPositions) : undefined;
  const fused = caches && {
    cosCache: g.constant(caches.cos, 'cos_cache'),
    sinCache: g.constant(caches.sin, 'sin_cache'),
    ...gqaLengths(g, attn),
    ...(rotary === 'separate' ? { positionIds } : {}),
  };
  const positions = fused ? undefined : layerInputs(g, cfg, positionIds, (window) => attentionMask(g, attn, seqLen, totalLen, window));
  for (let l = 0; l < cfg.numLayers; l++) {
    const layer = await src.layer(l);
    const spec = specs[l]!;
    const linears = spec.linears;
    const prefix = arch.layerPrefix(l);
    const weights: Record<string, Value> = {};
    for (const n of spec.norms) weights[n.local] = g.initializer(await data.tensor(`${prefix}${n.local}`, layer.tensors[n.local]!));
    const lw = (local: string): LinearWeights => {
      const bias = layer.tensors[`${local}.bias`];
      const quant = layer.quant[local];
      return { name: `${prefix}${local}`, weight: layer.tensors[`${local}.weight`]!, ...(bias ? { bias } : {}), ...(quant ? { quant } : {}) };
    };
    // int4 projections that share an input become one MatMulNBits each (exportPackedLinear)
    const packed: PackedProjections = {};
    if (fused && rotary === 'gqa') packed.qkv = await exportPackedLinear(g, data, `${prefix}self_attn.qkv_proj`, QKV.map(lw), o);
    if (fused) packed.gateUp = await exportPackedLinear(g, data, `${prefix}mlp.gate_up_proj`, GATE_UP.map(lw), o);
    const inPack = new Set([...(packed.qkv ? QKV : []), ...(packed.gateUp ? GATE_UP : [])]);
    const emitters = new Map<string, (x: Value) => Value>();
    for (const lin of linears) {
      if (!inPack.has(lin.local)) emitters.set(lin.local, await exportLinear(g, data, lw(lin.local), o));
      weights[`${lin.local}.weight`] = { name: `${prefix}${lin.local}.weight`, dtype: 'float32' };
    }
    const past = { key: g.input(`past_key_values.${l}.key`, 'float32', kvShape), value: g.input(`past_key_values.${l}.value`, 'float32', kvShape) };
    const unbiased = linears.map((s) => ({ ...s, bias: false }));
    const options = { linear: (_g: Graph, input: Value, _w: Value, _b: Value | undefined, local: string) => emitters.get(local)!(input) };
    const values: { out: Value | ResidualTerms; present?: { key: Value; value: Value } } = fused
      ? fusedDecoderLayerTerms(g, cfg, { ...spec, linears: unbiased }, { x, ...fused, weights, past }, { ...options, packed })
      : decoderLayer(g, cfg, unbiased, { x: x as Value, ...positions!(spec.attention), weights, past }, options);
    x = values.out;
    const present = ['batch_size', cfg.numKvHeads, 'total_sequence_length', cfg.headDim];
    g.output(values.present!.key, `present.${l}.key`, present);
    g.output(values.present!.value, `present.${l}.value`, present);
    onLayer?.(l);
  }
  const norm = g.initializer(await data.tensor(arch.finalNorm, await src.tensor(arch.finalNorm)));
  const h = fused ? skipRmsNorm(g, x, norm, cfg.rmsNormEps).normed : rmsNorm(g, x as Value, norm, cfg.rmsNormEps, cfg.features.normOffset);
  const lmName = arch.lmHeadWeight(cfg);
  const lm = lmName === arch.embedding ? emb : g.initializer(await data.tensor(lmName, await src.tensor(lmName)));
  // Gemm with transB reads the [vocab, hidden] weight in place (shared with the embedding when tied)
  const flat = g.reshape(h, [-1, cfg.hiddenSize]);
  const logits = softcapped(g, cfg, g.op('Gemm', [flat, lm], { transB: 1 }));
  const shape = g.op('Concat', [g.op('Slice', [g.op('Shape', [inputIds], {}, { dtype: 'int64' }), g.ints([0]), g.ints([2])]), g.ints([cfg.vocabSize])], { axis: 0 });
  g.output(g.op('Reshape', [logits, shape]), 'logits', ['batch_size', 'sequence_length', cfg.vocabSize]);
  return g;
}
