// Per-architecture adapters: the names of a model's tensors and modules, as data. Every supported model type
// shares HF's `model.layers.{i}.` layout and norm names; they differ in the features the config carries (q/k
// norms, Gemma 3's sandwich norms, experts) and in the names of the MLP's Linears (Mixtral's
// block_sparse_moe.experts.{e}.w1/w2/w3). Stages read these tables (mappings, input sites) and never branch on
// the architecture themselves; the decoder graph finds Linears by their `role`.

import type { ModelConfig, Rope } from './config.js';

/** the activation a Linear reads; Linears with the same input share calibration statistics (and GPTQ Hessians) */
export type InputSite = 'attn_in' | 'o_in' | 'mlp_in' | 'down_in' | `down_in.${number}`;

/** what a Linear does in the layer: the graph builds the layer from roles, whatever the tensor names */
export type LinearRole = 'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down' | 'router';

export interface LinearSpec {
  /** name inside a decoder layer, e.g. `self_attn.q_proj` */
  local: string;
  site: InputSite;
  role: LinearRole;
  /** the expert of a Mixture-of-Experts layer this Linear belongs to */
  expert?: number;
  outFeatures: number;
  inFeatures: number;
  bias: boolean;
}

/** a norm weight of a decoder layer: local tensor name (`input_layernorm.weight`) and length */
export interface NormSpec {
  local: string;
  size: number;
}

/** one layer's attention: its rope, and the sliding window (null: full causal attention) */
export interface LayerAttention {
  rope: Rope;
  window: number | null;
}

export interface LayerSpec {
  index: number;
  linears: LinearSpec[];
  norms: NormSpec[];
  attention: LayerAttention;
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
  /** selected only by its name or a regex, never by the class name `Linear` (MoE routers, like lm_head) */
  nameOnly?: boolean;
}

export interface ArchAdapter {
  readonly name: string;
  readonly embedding: string;
  readonly finalNorm: string;
  /** the output projection's weight tensor (the embedding when tied) */
  lmHeadWeight(cfg: ModelConfig): string;
  layerPrefix(layer: number): string;
  /** what decoder layer `l` holds and how it attends */
  layer(cfg: ModelConfig, l: number): LayerSpec;
  /** every tensor name of a decoder layer (full names) */
  layerTensors(cfg: ModelConfig, layer: number): string[];
  /** every module quantforge knows about, for targets/ignore resolution */
  modules(cfg: ModelConfig): ModuleInfo[];
  smoothquantMappings(cfg: ModelConfig, layer: number): Mapping[];
  awqMappings(cfg: ModelConfig, layer: number): Mapping[];
}

/** how a model names its MLP's Linears (dense and expert) */
interface MlpNames {
  /** module holding the router and experts */
  block: string;
  /** local names of an expert's gate, up and down Linears after `<block>.experts.<e>.` */
  expert: { gate: string; up: string; down: string };
}

const QWEN_MOE_NAMES: MlpNames = { block: 'mlp', expert: { gate: 'gate_proj', up: 'up_proj', down: 'down_proj' } };
const MIXTRAL_NAMES: MlpNames = { block: 'block_sparse_moe', expert: { gate: 'w1', up: 'w3', down: 'w2' } };

export function layerAttention(cfg: ModelConfig, l: number): LayerAttention {
  const local = cfg.features.local;
  if (local && local.layers.includes(l)) return { rope: local.rope, window: local.window };
  return { rope: { theta: cfg.ropeTheta, scaling: cfg.ropeScaling }, window: null };
}

export const isMoeLayer = (cfg: ModelConfig, l: number): boolean => cfg.features.moe !== null && !cfg.features.moe.denseLayers.includes(l);

function attentionLinears(cfg: ModelConfig): LinearSpec[] {
  const h = cfg.hiddenSize;
  const q = cfg.numHeads * cfg.headDim;
  const kv = cfg.numKvHeads * cfg.headDim;
  return [
    { local: 'self_attn.q_proj', site: 'attn_in', role: 'q', outFeatures: q, inFeatures: h, bias: cfg.qkvBias },
    { local: 'self_attn.k_proj', site: 'attn_in', role: 'k', outFeatures: kv, inFeatures: h, bias: cfg.qkvBias },
    { local: 'self_attn.v_proj', site: 'attn_in', role: 'v', outFeatures: kv, inFeatures: h, bias: cfg.qkvBias },
    { local: 'self_attn.o_proj', site: 'o_in', role: 'o', outFeatures: h, inFeatures: q, bias: cfg.oBias },
  ];
}

function mlpLinears(cfg: ModelConfig, l: number, names: MlpNames): LinearSpec[] {
  const h = cfg.hiddenSize;
  const moe = cfg.features.moe;
  if (!moe || !isMoeLayer(cfg, l)) {
    const i = cfg.intermediateSize;
    return [
      { local: 'mlp.gate_proj', site: 'mlp_in', role: 'gate', outFeatures: i, inFeatures: h, bias: false },
      { local: 'mlp.up_proj', site: 'mlp_in', role: 'up', outFeatures: i, inFeatures: h, bias: false },
      { local: 'mlp.down_proj', site: 'down_in', role: 'down', outFeatures: h, inFeatures: i, bias: false },
    ];
  }
  const i = moe.intermediateSize;
  const out: LinearSpec[] = [{ local: `${names.block}.gate`, site: 'mlp_in', role: 'router', outFeatures: moe.experts, inFeatures: h, bias: false }];
  for (let e = 0; e < moe.experts; e++) {
    const p = `${names.block}.experts.${e}.`;
    out.push(
      { local: `${p}${names.expert.gate}`, site: 'mlp_in', role: 'gate', expert: e, outFeatures: i, inFeatures: h, bias: false },
      { local: `${p}${names.expert.up}`, site: 'mlp_in', role: 'up', expert: e, outFeatures: i, inFeatures: h, bias: false },
      { local: `${p}${names.expert.down}`, site: `down_in.${e}`, role: 'down', expert: e, outFeatures: h, inFeatures: i, bias: false },
    );
  }
  return out;
}

function layerNorms(cfg: ModelConfig): NormSpec[] {
  const H = cfg.hiddenSize;
  const f = cfg.features;
  const norms = [{ local: 'input_layernorm.weight', size: H }];
  if (f.qkNorm) norms.push({ local: 'self_attn.q_norm.weight', size: cfg.headDim }, { local: 'self_attn.k_norm.weight', size: cfg.headDim });
  norms.push({ local: 'post_attention_layernorm.weight', size: H });
  if (f.sandwichNorms) norms.push({ local: 'pre_feedforward_layernorm.weight', size: H }, { local: 'post_feedforward_layernorm.weight', size: H });
  return norms;
}

/** the norm whose output the MLP (or the experts and their router) reads */
export const mlpInputNorm = (cfg: ModelConfig): string => (cfg.features.sandwichNorms ? 'pre_feedforward_layernorm' : 'post_attention_layernorm');

function smoothquantMappings(cfg: ModelConfig, layer: LayerSpec): Mapping[] {
  const role = (r: string): string[] => layer.linears.filter((l) => l.role === r).map((l) => l.local);
  // every reader of the MLP input absorbs the scales, the router included (it is scaled, not quantized)
  const mlpIn = layer.linears.filter((l) => l.site === 'mlp_in').map((l) => l.local);
  return [
    { smooth: 'input_layernorm', balance: [...role('q'), ...role('k'), ...role('v')] },
    { smooth: mlpInputNorm(cfg), balance: mlpIn },
  ];
}

function awqMappings(cfg: ModelConfig, layer: LayerSpec): Mapping[] {
  const find = (role: string, expert?: number): string => layer.linears.find((l) => l.role === role && l.expert === expert)!.local;
  const experts = [...new Set(layer.linears.flatMap((l) => (l.expert === undefined ? [] : [l.expert])))];
  const upDown = experts.length > 0 ? experts.map((e) => ({ smooth: find('up', e), balance: [find('down', e)] })) : [{ smooth: find('up'), balance: [find('down')] }];
  const [qkv, mlp] = smoothquantMappings(cfg, layer) as [Mapping, Mapping];
  return [qkv, mlp, { smooth: find('v'), balance: [find('o')] }, ...upDown];
}

function adapter(name: string, names: MlpNames): ArchAdapter {
  const self: ArchAdapter = {
    name,
    embedding: 'model.embed_tokens.weight',
    finalNorm: 'model.norm.weight',
    lmHeadWeight: (cfg) => (cfg.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight'),
    layerPrefix: (layer) => `model.layers.${layer}.`,
    layer: (cfg, l) => ({ index: l, linears: [...attentionLinears(cfg), ...mlpLinears(cfg, l, names)], norms: layerNorms(cfg), attention: layerAttention(cfg, l) }),
    layerTensors(cfg, l) {
      const p = self.layerPrefix(l);
      const spec = self.layer(cfg, l);
      const names = spec.norms.map((n) => `${p}${n.local}`);
      for (const lin of spec.linears) {
        names.push(`${p}${lin.local}.weight`);
        if (lin.bias) names.push(`${p}${lin.local}.bias`);
      }
      return names;
    },
    modules(cfg) {
      const out: ModuleInfo[] = [{ name: 'model.embed_tokens', className: 'Embedding', layer: null }];
      for (let l = 0; l < cfg.numLayers; l++) {
        const p = self.layerPrefix(l);
        const spec = self.layer(cfg, l);
        const norm = (n: NormSpec): ModuleInfo => ({ name: `${p}${n.local.replace(/\.weight$/, '')}`, className: 'RMSNorm', layer: l });
        out.push(norm(spec.norms[0]!));
        for (const lin of spec.linears) out.push({ name: `${p}${lin.local}`, className: 'Linear', layer: l, ...(lin.role === 'router' ? { nameOnly: true } : {}) });
        out.push(...spec.norms.slice(1).map(norm));
      }
      out.push({ name: 'model.norm', className: 'RMSNorm', layer: null });
      out.push({ name: 'lm_head', className: 'Linear', layer: null });
      return out;
    },
    smoothquantMappings: (cfg, l) => smoothquantMappings(cfg, self.layer(cfg, l)),
    awqMappings: (cfg, l) => awqMappings(cfg, self.layer(cfg, l)),
  };
  return self;
}

/** llama, mistral, qwen2, qwen3, gemma3_text and qwen3_moe: HF LlamaForCausalLM naming (MoE experts under mlp.experts) */
export const LLAMA_FAMILY: ArchAdapter = adapter('llama', QWEN_MOE_NAMES);
/** mixtral: the MoE block is block_sparse_moe, experts w1 (gate), w3 (up), w2 (down) */
export const MIXTRAL: ArchAdapter = adapter('mixtral', MIXTRAL_NAMES);

export function archFor(cfg: ModelConfig): ArchAdapter {
  return cfg.modelType === 'mixtral' ? MIXTRAL : LLAMA_FAMILY;
}
