// Per-architecture adapters: the names of a model's tensors and modules, as data. Llama, Mistral and Qwen2
// share one layout (HF LlamaForCausalLM naming); they differ only in biases, which the config carries.
// Stages read these tables (mappings, input groups) and never branch on the architecture themselves.

import type { ModelConfig } from './config.js';

/** the activation a Linear reads; Linears with the same input share calibration statistics (and GPTQ Hessians) */
export type InputSite = 'attn_in' | 'o_in' | 'mlp_in' | 'down_in';

export interface LinearSpec {
  /** name inside a decoder layer, e.g. `self_attn.q_proj` */
  local: string;
  site: InputSite;
  outFeatures: number;
  inFeatures: number;
  bias: boolean;
}

/** a smoothing mapping: per-channel scales divide `smooth` (a norm or a Linear's output rows) and multiply `balance` */
export interface Mapping {
  smooth: string;
  balance: readonly string[];
}

export interface ModuleInfo {
  /** full module name as in the checkpoint, without `.weight` */
  name: string;
  className: 'Linear' | 'Embedding' | 'RMSNorm';
  layer: number | null;
}

export interface ArchAdapter {
  readonly name: string;
  readonly embedding: string;
  readonly finalNorm: string;
  /** the output projection's weight tensor (the embedding when tied) */
  lmHeadWeight(cfg: ModelConfig): string;
  layerPrefix(layer: number): string;
  linears(cfg: ModelConfig): LinearSpec[];
  readonly norms: { readonly input: string; readonly post: string };
  /** every tensor name of a decoder layer (full names) */
  layerTensors(cfg: ModelConfig, layer: number): string[];
  /** every module quantforge knows about, for targets/ignore resolution */
  modules(cfg: ModelConfig): ModuleInfo[];
  readonly smoothquantMappings: readonly Mapping[];
  readonly awqMappings: readonly Mapping[];
}

const LLAMA_MAPPINGS_SQ: readonly Mapping[] = [
  { smooth: 'input_layernorm', balance: ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'] },
  { smooth: 'post_attention_layernorm', balance: ['mlp.gate_proj', 'mlp.up_proj'] },
];

const LLAMA_MAPPINGS_AWQ: readonly Mapping[] = [
  ...LLAMA_MAPPINGS_SQ,
  { smooth: 'self_attn.v_proj', balance: ['self_attn.o_proj'] },
  { smooth: 'mlp.up_proj', balance: ['mlp.down_proj'] },
];

export const LLAMA_FAMILY: ArchAdapter = {
  name: 'llama',
  embedding: 'model.embed_tokens.weight',
  finalNorm: 'model.norm.weight',
  lmHeadWeight: (cfg) => (cfg.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight'),
  layerPrefix: (layer) => `model.layers.${layer}.`,
  norms: { input: 'input_layernorm', post: 'post_attention_layernorm' },
  linears(cfg) {
    const h = cfg.hiddenSize;
    const q = cfg.numHeads * cfg.headDim;
    const kv = cfg.numKvHeads * cfg.headDim;
    const i = cfg.intermediateSize;
    return [
      { local: 'self_attn.q_proj', site: 'attn_in', outFeatures: q, inFeatures: h, bias: cfg.qkvBias },
      { local: 'self_attn.k_proj', site: 'attn_in', outFeatures: kv, inFeatures: h, bias: cfg.qkvBias },
      { local: 'self_attn.v_proj', site: 'attn_in', outFeatures: kv, inFeatures: h, bias: cfg.qkvBias },
      { local: 'self_attn.o_proj', site: 'o_in', outFeatures: h, inFeatures: q, bias: cfg.oBias },
      { local: 'mlp.gate_proj', site: 'mlp_in', outFeatures: i, inFeatures: h, bias: false },
      { local: 'mlp.up_proj', site: 'mlp_in', outFeatures: i, inFeatures: h, bias: false },
      { local: 'mlp.down_proj', site: 'down_in', outFeatures: h, inFeatures: i, bias: false },
    ];
  },
  layerTensors(cfg, layer) {
    const p = this.layerPrefix(layer);
    const names = [`${p}${this.norms.input}.weight`, `${p}${this.norms.post}.weight`];
    for (const l of this.linears(cfg)) {
      names.push(`${p}${l.local}.weight`);
      if (l.bias) names.push(`${p}${l.local}.bias`);
    }
    return names;
  },
  modules(cfg) {
    const out: ModuleInfo[] = [{ name: 'model.embed_tokens', className: 'Embedding', layer: null }];
    for (let l = 0; l < cfg.numLayers; l++) {
      const p = this.layerPrefix(l);
      out.push({ name: `${p}${this.norms.input}`, className: 'RMSNorm', layer: l });
      for (const lin of this.linears(cfg)) out.push({ name: `${p}${lin.local}`, className: 'Linear', layer: l });
      out.push({ name: `${p}${this.norms.post}`, className: 'RMSNorm', layer: l });
    }
    out.push({ name: 'model.norm', className: 'RMSNorm', layer: null });
    out.push({ name: 'lm_head', className: 'Linear', layer: null });
    return out;
  },
  smoothquantMappings: LLAMA_MAPPINGS_SQ,
  awqMappings: LLAMA_MAPPINGS_AWQ,
};

export function archFor(cfg: ModelConfig): ArchAdapter {
  switch (cfg.modelType) {
    case 'llama':
    case 'mistral':
    case 'qwen2':
      return LLAMA_FAMILY;
  }
}
