// The `llama` architecture of GGUF as llama.cpp's converter writes it for an HF LlamaForCausalLM
// (convert_hf_to_gguf.py LlamaModel + TextModel.set_gguf_parameters; gguf-py constants.py names):
// the llama.* hyperparameter keys, the tensor names, and the Q/K row permutation.
//
// RoPE: HF Llama rotates the halves of each head (rotate_half: dimension i pairs with i + head_dim/2);
// llama.cpp's `llama` architecture rotates adjacent pairs (2i, 2i+1), as Meta's original checkpoints and
// llama2.c do. The converter therefore reorders the rows of q_proj and k_proj (weights and biases) within
// each head: with n = heads (kv heads for k_proj) and h = head_dim,
//   row (head, half, i) of HF  →  row (head, i, half) of GGUF     (reshape [n, 2, h/2, …], swap axes 1 and 2)
// i.e. GGUF row head·h + 2i + half = HF row head·h + half·h/2 + i. This exactly undoes the permute() HF's
// convert_llama_weights_to_hf.py applied, so a checkpoint converted from llama2.c / Meta weights (like
// ../shared/models, whose q/k rows were permuted that way) gets its original interleaved rows back.
// worked example, one head of h = 4: HF rows [r0 r1 r2 r3] → GGUF rows [r0 r2 r1 r3].
// Quantization blocks run along rows (input features), so permuting rows commutes with quantizing them.

import { f32, str, u32, type GgufValue } from './values.js';

/** the hyperparameters the llama keys need (field names as quantforge's ModelConfig has them) */
export interface LlamaHParams {
  readonly modelType: string;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  readonly maxPositions: number;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  /** llama3 scaling is exported (rope_freqs.weight); linear scaling is refused by exportGguf */
  readonly ropeScaling: { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number } | { type: 'linear'; factor: number } | null;
  readonly tieWordEmbeddings: boolean;
}

export function llamaMetadata(cfg: LlamaHParams, name: string): [string, GgufValue][] {
  return [
    ['general.architecture', str('llama')],
    ['general.name', str(name)],
    ['llama.vocab_size', u32(cfg.vocabSize)],
    ['llama.context_length', u32(cfg.maxPositions)],
    ['llama.embedding_length', u32(cfg.hiddenSize)],
    ['llama.block_count', u32(cfg.numLayers)],
    ['llama.feed_forward_length', u32(cfg.intermediateSize)],
    ['llama.attention.head_count', u32(cfg.numHeads)],
    ['llama.attention.head_count_kv', u32(cfg.numKvHeads)],
    ['llama.attention.key_length', u32(cfg.headDim)],
    ['llama.attention.value_length', u32(cfg.headDim)],
    ['llama.rope.dimension_count', u32(cfg.headDim)],
    ['llama.rope.freq_base', f32(cfg.ropeTheta)],
    ['llama.attention.layer_norm_rms_epsilon', f32(cfg.rmsNormEps)],
  ];
}

/** HF tensor name → GGUF tensor name (undefined for a tensor the llama architecture has no place for) */
export function llamaTensorName(hf: string): string | undefined {
  const fixed: Record<string, string> = {
    'model.embed_tokens.weight': 'token_embd.weight',
    'model.norm.weight': 'output_norm.weight',
    'lm_head.weight': 'output.weight',
  };
  if (hf in fixed) return fixed[hf];
  const m = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(hf);
  if (m === null) return undefined;
  const local: Record<string, string> = {
    input_layernorm: 'attn_norm',
    'self_attn.q_proj': 'attn_q',
    'self_attn.k_proj': 'attn_k',
    'self_attn.v_proj': 'attn_v',
    'self_attn.o_proj': 'attn_output',
    post_attention_layernorm: 'ffn_norm',
    'mlp.gate_proj': 'ffn_gate',
    'mlp.up_proj': 'ffn_up',
    'mlp.down_proj': 'ffn_down',
  };
  const g = local[m[2]!];
  return g === undefined ? undefined : `blk.${m[1]}.${g}.${m[3]}`;
}

/** the heads whose rows the converter permutes for an HF tensor: q_proj → heads, k_proj → kv heads */
export function permutedHeads(hf: string, cfg: LlamaHParams): number | undefined {
  if (/\.self_attn\.q_proj\.(weight|bias)$/.test(hf)) return cfg.numHeads;
  if (/\.self_attn\.k_proj\.(weight|bias)$/.test(hf)) return cfg.numKvHeads;
  return undefined;
}

/** order[g] = the HF row that becomes GGUF row g, for `rows` rows in `heads` heads */
export function ggufRowOrder(rows: number, heads: number): Int32Array {
  const h = rows / heads;
  if (!Number.isInteger(h) || h % 2 !== 0) throw new Error(`cannot permute ${rows} rows into ${heads} heads of an even size`);
  const order = new Int32Array(rows);
  for (let head = 0; head < heads; head++) {
    for (let half = 0; half < 2; half++) {
      for (let i = 0; i < h / 2; i++) order[head * h + 2 * i + half] = head * h + half * (h / 2) + i;
    }
  }
  return order;
}

/** rows of `width` elements moved into GGUF's q/k order (`inverse`: back to HF's) */
export function permuteRows<T extends Float32Array | Uint8Array>(w: T, rows: number, heads: number, inverse = false): T {
  const width = w.length / rows;
  const order = ggufRowOrder(rows, heads);
  const out = new (w.constructor as new (n: number) => T)(w.length);
  order.forEach((hf, g) => {
    const [from, to] = inverse ? [g, hf] : [hf, g];
    out.set(w.subarray(from * width, (from + 1) * width), to * width);
  });
  return out;
}

/** llama3 rope scaling as the converter writes it: a rope_freqs.weight tensor of head_dim/2 factors */
export function llama3RopeFactors(cfg: LlamaHParams): Float32Array | undefined {
  const rs = cfg.ropeScaling;
  if (rs === null || rs.type !== 'llama3') return undefined;
  const dim = cfg.headDim;
  const lowWavelen = rs.originalMaxPositions / rs.lowFreqFactor;
  const highWavelen = rs.originalMaxPositions / rs.highFreqFactor;
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    const freq = 1 / Math.fround(cfg.ropeTheta ** Math.fround((2 * i) / dim));
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = rs.factor;
    else {
      const smooth = (rs.originalMaxPositions / wavelen - rs.lowFreqFactor) / (rs.highFreqFactor - rs.lowFreqFactor);
      out[i] = 1 / ((1 - smooth) / rs.factor + smooth);
    }
  }
  return out;
}
