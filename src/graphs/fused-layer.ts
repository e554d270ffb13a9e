// A Llama-family decoder layer from onnxruntime's fused CPU kernels (DESIGN.md §8): SimplifiedLayerNormalization
// for RMSNorm, com.microsoft GroupQueryAttention for rotary embedding + causal grouped-query attention (+ the KV
// cache when decoding), and the same Linear projections as decoder-graph.ts. About 20 elementwise ops per layer
// become three kernels, and no [B, heads, T, T] score tensor is materialised. The results differ from the
// basic-op layer by float32 rounding only (the softmax and the rotation are computed in another order): on the
// shared models the layer outputs differ by ~1e-6 relative and perplexities by under 1e-5 relative
// (BENCHMARKS.md). Evaluation and the ONNX export run this layer; the basic-op layer stays the reference (tests
// compare the two), is what calibration runs on every provider (steps/activations.ts: GPTQ's solve turns those
// rounding differences into flipped codes, and the WebGPU provider's GroupQueryAttention is off), what AutoRound
// differentiates (no gradient rules for fused kernels) and what runs every layer the fused kernels cannot compute
// as the model does (fusedLayerSupport: head sizes
// GroupQueryAttention cannot take, Qwen3's q/k norms, Gemma 3's (1 + w) and sandwich norms, GELU, attention
// scales and sliding windows, Mixture-of-Experts blocks).

import { float, type Graph, type Value } from '../ort/graph.js';
import type { InputSite, LayerSpec } from '../model/arch.js';
import type { ModelConfig, Rope } from '../model/config.js';
import { tensor, type Tensor } from '../tensor.js';
import { layerParts, type DecoderOptions } from './decoder-graph.js';
import { inverseFrequencies } from './rope.js';

/** a hidden state not yet added up: the residual stream `skip` and what a layer adds to it */
export interface ResidualTerms {
  skip: Value;
  add: Value;
}

export interface FusedLayerInputs {
  /** hidden states `[B, S, H]`, or their two terms, which the input norm adds (SkipSimplifiedLayerNormalization) */
  x: Value | ResidualTerms;
  /** rotary tables `[max positions, head_dim / 2]` (rotate-half layout), indexed by position */
  cosCache: Value;
  sinCache: Value;
  /** int32 `[B]`: each sequence's total length (past + new) minus one */
  seqlensK: Value;
  /** int32 scalar: the longest total length */
  totalLength: Value;
  /** int64 `[B, S]` positions, or `[1]` the first position of every sequence (rotary outside GQA, see fusedRotary) */
  positionIds?: Value;
  weights: Readonly<Record<string, Value>>;
  /** cached keys/values of earlier positions `[B, nkv, P, hd]`, rotated */
  past?: { key: Value; value: Value };
}

export interface FusedLayerValues {
  out: Value;
  /** keys and values of all positions `[B, nkv, P + S, hd]` */
  present: { key: Value; value: Value };
  /** the input activation of each Linear site (before any activation fake-quant) */
  sites: Record<InputSite, Value>;
}

/**
 * How the fused layer rotates q and k: inside GroupQueryAttention (its rotary needs head_dim % 16 = 0), with a
 * RotaryEmbedding op before it (GQA itself needs head_dim % 8 = 0), or not at all (use the basic-op layer).
 */
export function fusedRotary(cfg: ModelConfig): 'gqa' | 'separate' | undefined {
  return cfg.headDim % 16 === 0 ? 'gqa' : cfg.headDim % 8 === 0 ? 'separate' : undefined;
}

/** what fusedLayerSupport reads of a layer */
export type FusableLayer = Pick<LayerSpec, 'linears' | 'norms' | 'attention'>;

const sameRope = (a: Rope, b: Rope): boolean => a.theta === b.theta && JSON.stringify(a.scaling) === JSON.stringify(b.scaling);

/**
 * Whether layer `layer` can run as the fused layer, and how it rotates: only a plain Llama-family layer (llama,
 * mistral, qwen2: RMSNorm weights as stored, SiLU-gated dense MLP, 1/√head_dim attention over the whole causal
 * window with the model's rope, q/k/v/o and gate/up/down by their Llama names); undefined for anything else.
 */
export function fusedLayerSupport(cfg: ModelConfig, layer: FusableLayer): 'gqa' | 'separate' | undefined {
  const f = cfg.features;
  const plain = f.normOffset === 0 && !f.qkNorm && f.act === 'silu' && !f.sandwichNorms && f.attentionScale === null;
  const attention = layer.attention.window === null && sameRope(layer.attention.rope, { theta: cfg.ropeTheta, scaling: cfg.ropeScaling });
  const locals = new Set(layer.linears.map((l) => l.local));
  const dense = layer.linears.length === LLAMA_LINEARS.length && LLAMA_LINEARS.every((l) => locals.has(l)) && layer.linears.every((l) => l.expert === undefined);
  const norms = layer.norms.map((n) => n.local).sort().join(',') === 'input_layernorm.weight,post_attention_layernorm.weight';
  return plain && attention && dense && norms ? fusedRotary(cfg) : undefined;
}

const LLAMA_LINEARS = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];

export function rmsNormFused(g: Graph, x: Value, w: Value, eps: number): Value {
  return g.op('SimplifiedLayerNormalization', [x, w], { epsilon: float(eps), axis: -1 });
}

/** RMSNorm of `x`, and `x` itself; terms are added and normed by one SkipSimplifiedLayerNormalization */
export function skipRmsNorm(g: Graph, x: Value | ResidualTerms, w: Value, eps: number): { normed: Value; sum: Value } {
  if (!('skip' in x)) return { normed: rmsNormFused(g, x, w, eps), sum: x };
  const [normed, , , sum] = g.opN('SkipSimplifiedLayerNormalization', [x.add, x.skip, w], 4, { epsilon: float(eps) }, { domain: 'com.microsoft' }) as [Value, Value, Value, Value];
  return { normed, sum };
}

/**
 * Projections that share an input emitted as one op each (the ONNX export's stacked MatMulNBits): `qkv` gives
 * q, k and v concatenated along the last axis (GroupQueryAttention's packed input; used only when GQA rotates),
 * `gateUp` gate and up concatenated (split in the graph).
 */
export interface PackedProjections {
  qkv?: (x: Value) => Value;
  gateUp?: (x: Value) => Value;
}

export type FusedLayerOptions = DecoderOptions & { packed?: PackedProjections };

export function fusedDecoderLayer(g: Graph, cfg: ModelConfig, layer: FusableLayer, inp: FusedLayerInputs, options: FusedLayerOptions = {}): FusedLayerValues {
  const { terms, present, sites } = layerTerms(g, cfg, layer, inp, options, false);
  return { out: g.add(terms.skip, terms.add), present, sites };
}

/**
 * The fused layer with its output left as two terms (residual + MLP output) for the next norm to add, and the
 * attention residual added inside the post-attention norm: two SkipSimplifiedLayerNormalization ops per layer
 * instead of two Adds and two norms (the ONNX export). The sums are the same float32 additions.
 */
export function fusedDecoderLayerTerms(g: Graph, cfg: ModelConfig, layer: FusableLayer, inp: FusedLayerInputs, options: FusedLayerOptions = {}): Omit<FusedLayerValues, 'out'> & { out: ResidualTerms } {
  const { terms, present, sites } = layerTerms(g, cfg, layer, inp, options, true);
  return { out: terms, present, sites };
}

function layerTerms(g: Graph, cfg: ModelConfig, layer: FusableLayer, inp: FusedLayerInputs, options: FusedLayerOptions, skipNorms: boolean): { terms: ResidualTerms; present: FusedLayerValues['present']; sites: FusedLayerValues['sites'] } {
  const rotary = fusedLayerSupport(cfg, layer);
  if (!rotary) throw new Error(`fused decoder layer: this ${cfg.modelType} layer is not a plain Llama-family layer with head_dim a multiple of 8; run the basic-op layer`);
  const p = layerParts(g, cfg, layer.linears, inp.weights, options);
  const { normed: attnIn, sum: x } = skipRmsNorm(g, inp.x, p.w('input_layernorm.weight'), cfg.rmsNormEps);
  const rotate = (y: Value, heads: number): Value => {
    if (rotary === 'gqa') return y;
    if (!inp.positionIds) throw new Error('fused decoder layer: rotary outside GroupQueryAttention needs position_ids');
    return g.op('RotaryEmbedding', [y, inp.positionIds, inp.cosCache, inp.sinCache], { interleaved: 0, num_heads: heads }, { domain: 'com.microsoft' });
  };
  const packedQkv = rotary === 'gqa' ? options.packed?.qkv : undefined;
  const q = packedQkv ? packedQkv(attnIn) : rotate(p.proj('self_attn.q_proj', attnIn), cfg.numHeads);
  const k = packedQkv ? undefined : rotate(p.proj('self_attn.k_proj', attnIn), cfg.numKvHeads);
  const v = packedQkv ? undefined : p.proj('self_attn.v_proj', attnIn);
  const gqaInputs = [q, k, v, inp.past?.key, inp.past?.value, inp.seqlensK, inp.totalLength, ...(rotary === 'gqa' ? [inp.cosCache, inp.sinCache] : [])];
  const [attn, key, value] = g.opN(
    'GroupQueryAttention',
    gqaInputs,
    3,
    { num_heads: cfg.numHeads, kv_num_heads: cfg.numKvHeads, do_rotary: rotary === 'gqa' ? 1 : 0, rotary_interleaved: 0, scale: float(1 / Math.sqrt(cfg.headDim)) },
    { domain: 'com.microsoft' },
  ) as [Value, Value, Value];
  const o = p.proj('self_attn.o_proj', attn);
  const { normed: mlpIn, sum: h } = skipRmsNorm(g, skipNorms ? { skip: x, add: o } : g.add(x, o), p.w('post_attention_layernorm.weight'), cfg.rmsNormEps);
  const inter = layer.linears.find((l) => l.local === 'mlp.gate_proj')!.outFeatures;
  const [gate, up] = options.packed?.gateUp
    ? (g.opN('Split', [options.packed.gateUp(mlpIn), g.ints([inter, inter])], 2, { axis: -1 }) as [Value, Value])
    : [p.proj('mlp.gate_proj', mlpIn), p.proj('mlp.up_proj', mlpIn)];
  const act = g.mul(g.mul(gate, g.op('Sigmoid', [gate])), up);
  const sites = { attn_in: attnIn, o_in: attn, mlp_in: mlpIn, down_in: act };
  return { terms: { skip: h, add: p.proj('mlp.down_proj', act) }, present: { key, value }, sites };
}

/** cos and sin caches `[positions, head_dim / 2]` for positions 0 … n − 1, as HF Llama computes the angles */
export function rotaryCaches(cfg: ModelConfig, n: number): { cos: Tensor<'float32'>; sin: Tensor<'float32'> } {
  const inv = inverseFrequencies({ theta: cfg.ropeTheta, scaling: cfg.ropeScaling }, cfg.headDim);
  const half = cfg.headDim / 2;
  const cos = new Float32Array(n * half);
  const sin = new Float32Array(n * half);
  for (let t = 0; t < n; t++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(t * (inv[i] as number));
      cos[t * half + i] = Math.cos(angle);
      sin[t * half + i] = Math.sin(angle);
    }
  }
  return { cos: tensor('float32', [n, half], cos), sin: tensor('float32', [n, half], sin) };
}

const memo = new Map<string, { cos: Tensor<'float32'>; sin: Tensor<'float32'> }>();

/** the caches and per-sequence lengths of a batch of `B` full windows of `T` positions, memoised */
export function fusedPositionInputs(cfg: ModelConfig, B: number, T: number): Record<string, Tensor> {
  const key = `${cfg.headDim}:${cfg.ropeTheta}:${JSON.stringify(cfg.ropeScaling)}:${T}`;
  let caches = memo.get(key);
  if (!caches) memo.set(key, (caches = rotaryCaches(cfg, T)));
  return {
    cos_cache: caches.cos,
    sin_cache: caches.sin,
    seqlens_k: tensor('int32', [B], new Int32Array(B).fill(T - 1)),
    total_length: tensor('int32', [], Int32Array.of(T)),
    ...(fusedRotary(cfg) === 'separate' ? { position_ids: tensor('int64', [1], BigInt64Array.of(0n)) } : {}),
  };
}
