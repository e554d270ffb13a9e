// What a decoder layer of the newer architectures computes beyond the Llama layout, read from config.json:
// Qwen3's per-head q/k norms, Gemma 3's (1 + weight) norms, GELU-tanh MLP, sandwich norms, local/global
// attention, query_pre_attn_scalar, √hidden embedding scale and final logit softcapping, and the
// Mixture-of-Experts blocks of Mixtral and Qwen3-MoE. Llama, Mistral and Qwen2 use LLAMA_FEATURES.

import { toBfloat16, fromBfloat16, toFloat16, fromFloat16 } from '../quant/half.js';
import { bool, count, found, int, ModelConfigError, parseRope, positive, refuseSet, type Raw, type Rope } from './config-fields.js';

/** Gemma 3's local layers: sliding-window attention with their own rope */
export interface LocalAttention {
  /** a query attends to the `window` positions ending at itself (HF: kv > q − window) */
  window: number;
  rope: Rope;
  /** indices of the local (sliding-window) layers; every other layer is global */
  layers: readonly number[];
}

export interface MoeConfig {
  experts: number;
  /** experts each token is routed to */
  topK: number;
  /** renormalise the top-k routing weights to sum to 1 (Mixtral always; Qwen3-MoE's norm_topk_prob) */
  normTopK: boolean;
  /** each expert's intermediate size */
  intermediateSize: number;
  /** layers with a dense MLP instead of experts (Qwen3-MoE mlp_only_layers / decoder_sparse_step) */
  denseLayers: readonly number[];
}

export interface ArchFeatures {
  /** RMSNorm multiplies by (normOffset + weight): 1 for Gemma 3 (weights stored zero-centred), else 0 */
  normOffset: 0 | 1;
  /** per-head RMSNorm of q and k before RoPE (`self_attn.q_norm`, `self_attn.k_norm`) */
  qkNorm: boolean;
  /** the gated MLP's activation */
  act: 'silu' | 'gelu_pytorch_tanh';
  /** Gemma 3: attention and MLP outputs are normed before each residual add; the MLP reads pre_feedforward_layernorm */
  sandwichNorms: boolean;
  /** multiplier of q·kᵀ; null: 1/√head_dim */
  attentionScale: number | null;
  /** the embedding lookup is multiplied by this (Gemma 3: √hidden in the checkpoint dtype) */
  embedScale: number;
  /** logits = cap·tanh(logits / cap); null: none */
  finalLogitSoftcap: number | null;
  local: LocalAttention | null;
  moe: MoeConfig | null;
}

export const LLAMA_FEATURES: ArchFeatures = {
  normOffset: 0,
  qkNorm: false,
  act: 'silu',
  sandwichNorms: false,
  attentionScale: null,
  embedScale: 1,
  finalLogitSoftcap: null,
  local: null,
  moe: null,
};

/** x rounded to the dtype config.json names (`torch_dtype`, transformers 5 `dtype`), as HF's `.to(weight.dtype)` */
export function inModelDtype(raw: Raw, x: number): number {
  const dtype = raw['torch_dtype'] ?? raw['dtype'];
  const f = Float32Array.of(x);
  if (dtype === 'bfloat16') return fromBfloat16(toBfloat16(f))[0] as number;
  if (dtype === 'float16') return fromFloat16(toFloat16(f))[0] as number;
  return f[0] as number;
}

export function qwen3Features(): ArchFeatures {
  return { ...LLAMA_FEATURES, qkNorm: true };
}

/** Gemma 3 text (Gemma3ForCausalLM, model_type gemma3_text) */
export function gemma3Features(raw: Raw, file: string, numLayers: number, hidden: number): ArchFeatures {
  const act = raw['hidden_activation'] ?? raw['hidden_act'] ?? 'gelu_pytorch_tanh';
  if (act !== 'gelu_pytorch_tanh') throw new ModelConfigError('unsupported-field', `${file}: hidden_activation ${found(act)} is not supported; supported: "gelu_pytorch_tanh"`, { file, field: 'hidden_activation' });
  // HF's Gemma3Attention never passes attn_logit_softcapping to its attention function: refuse rather than guess
  refuseSet(raw, file, 'attn_logit_softcapping', "HF's Gemma3Attention does not apply it");
  refuseSet(raw, file, 'use_bidirectional_attention', 'quantforge evaluates causal language models');
  const types = raw['layer_types'];
  let local: number[];
  if (Array.isArray(types)) {
    if (types.length !== numLayers || types.some((t) => t !== 'sliding_attention' && t !== 'full_attention')) {
      throw new ModelConfigError('bad-field', `${file}: layer_types should list "sliding_attention" or "full_attention" for each of the ${numLayers} layers`, { file, field: 'layer_types' });
    }
    local = types.flatMap((t, i) => (t === 'sliding_attention' ? [i] : []));
  } else {
    // HF before layer_types: every `sliding_window_pattern`-th layer (1-based) is global
    const pattern = count(raw, file, 'sliding_window_pattern', 6);
    local = Array.from({ length: numLayers }, (_, i) => i).filter((i) => (i + 1) % pattern !== 0);
  }
  const softcap = raw['final_logit_softcapping'];
  return {
    normOffset: 1,
    qkNorm: true,
    act: 'gelu_pytorch_tanh',
    sandwichNorms: true,
    attentionScale: 1 / Math.sqrt(positive(raw, file, 'query_pre_attn_scalar', 256)),
    embedScale: inModelDtype(raw, Math.sqrt(hidden)),
    finalLogitSoftcap: softcap === null || softcap === undefined ? null : positive(raw, file, 'final_logit_softcapping'),
    local: {
      window: count(raw, file, 'sliding_window', 4096),
      rope: 'rope_parameters' in raw ? parseRope(raw, file, 10000, 'sliding_attention') : { theta: positive(raw, file, 'rope_local_base_freq', 10000), scaling: null },
      layers: local,
    },
    moe: null,
  };
}

/** Mixtral (block_sparse_moe: top-k router `gate`, experts w1/w2/w3, routing weights always renormalised) */
export function mixtralFeatures(raw: Raw, file: string): ArchFeatures {
  const experts = count(raw, file, 'num_local_experts', 8);
  const topK = count(raw, file, 'num_experts_per_tok', 2);
  return { ...LLAMA_FEATURES, moe: checkedMoe(file, { experts, topK, normTopK: true, intermediateSize: count(raw, file, 'intermediate_size'), denseLayers: [] }) };
}

/** Qwen3-MoE (mlp: router `gate`, experts gate/up/down_proj; dense MLP layers by mlp_only_layers / decoder_sparse_step) */
export function qwen3MoeFeatures(raw: Raw, file: string, numLayers: number): ArchFeatures {
  const step = int(raw, file, 'decoder_sparse_step', 1);
  const only = raw['mlp_only_layers'] ?? [];
  if (!Array.isArray(only) || only.some((l) => !Number.isInteger(l))) throw new ModelConfigError('bad-field', `${file}: mlp_only_layers should be a list of layer indices, found ${found(only)}`, { file, field: 'mlp_only_layers' });
  // transformers 5 maps num_experts onto num_local_experts
  const experts = int(raw, file, raw['num_experts'] === undefined && raw['num_local_experts'] !== undefined ? 'num_local_experts' : 'num_experts');
  const denseLayers = Array.from({ length: numLayers }, (_, l) => l).filter((l) => only.includes(l) || experts === 0 || step <= 0 || (l + 1) % step !== 0);
  const moe: MoeConfig = {
    experts,
    topK: count(raw, file, 'num_experts_per_tok'),
    normTopK: bool(raw, file, 'norm_topk_prob', false),
    intermediateSize: count(raw, file, 'moe_intermediate_size'),
    denseLayers,
  };
  return { ...LLAMA_FEATURES, qkNorm: true, moe: checkedMoe(file, moe) };
}

function checkedMoe(file: string, moe: MoeConfig): MoeConfig {
  if (moe.topK < 1 || moe.topK > moe.experts) throw new ModelConfigError('bad-field', `${file}: num_experts_per_tok ${moe.topK} should be between 1 and the number of experts (${moe.experts})`, { file, field: 'num_experts_per_tok' });
  return moe;
}
