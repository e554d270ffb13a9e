// One decoder layer as an ONNX graph built from basic ops (so the same builder also serves the differentiated
// AutoRound block): RMSNorm → q/k/v (→ per-head q/k RMSNorm) → RoPE (rotate_half) → GQA causal softmax
// attention → o_proj (→ RMSNorm) → residual → RMSNorm → gated MLP or routed experts (→ RMSNorm) → residual.
// What a config's `features` switch on are small functions below (qkNormed, sandwiched, activation; experts in
// moe-block.ts); the Llama path emits exactly the ops it always did. Weights are graph inputs named by their
// local names (`self_attn.q_proj.weight`), so one session serves every layer of the same shape; the rope
// tables and mask are inputs too, so local (sliding-window) and global layers share it as well.

import type { Graph, Value } from '../ort/graph.js';
import type { ActQuant } from '../quant/module-quant.js';
import { activationFakeQuant, staticInputs } from './act-quant.js';
import { mlpInputNorm, type InputSite, type LinearRole, type LinearSpec, type NormSpec } from '../model/arch.js';
import type { ModelConfig } from '../model/config.js';
import { moeBlock } from './moe-block.js';

/** x · Wᵀ (+ b) for activations `[..., in]` and a weight `[out, in]` */
export type LinearFn = (g: Graph, x: Value, w: Value, bias: Value | undefined, local: string) => Value;

export const matmulLinear: LinearFn = (g, x, w, bias) => {
  const y = g.matmul(x, g.transpose(w, [1, 0]));
  return bias ? g.add(y, bias) : y;
};

/** x / √(mean(x²) + eps) · (offset + w): offset 1 for Gemma 3's zero-centred weights */
export function rmsNorm(g: Graph, x: Value, w: Value, eps: number, offset = 0): Value {
  const variance = g.reduceMean(g.mul(x, x), [-1]);
  const normed = g.div(x, g.op('Sqrt', [g.add(variance, g.scalar(eps))]));
  return g.mul(normed, offset === 0 ? w : g.add(w, g.scalar(offset)));
}

/** the gated MLP's activation: SiLU, or GELU with the tanh approximation (HF gelu_pytorch_tanh) */
export function activation(g: Graph, cfg: ModelConfig, x: Value): Value {
  if (cfg.features.act === 'silu') return g.mul(x, g.op('Sigmoid', [x]));
  const inner = g.mul(g.add(x, g.mul(g.mul(g.mul(x, x), x), g.scalar(0.044715))), g.scalar(Math.sqrt(2 / Math.PI)));
  return g.mul(g.mul(x, g.scalar(0.5)), g.add(g.op('Tanh', [inner]), g.scalar(1)));
}

/** logits capped to (−cap, cap) by cap·tanh(logits / cap) when the config asks (Gemma final_logit_softcapping) */
export function softcapped(g: Graph, cfg: ModelConfig, logits: Value): Value {
  const cap = cfg.features.finalLogitSoftcap;
  return cap === null ? logits : g.mul(g.op('Tanh', [g.div(logits, g.scalar(cap))]), g.scalar(cap));
}

/** the local name of the Linear playing `role` (of `expert`, for an expert's gate/up/down) */
export function roleLocal(linears: readonly LinearSpec[], role: LinearRole, expert?: number): string {
  const spec = linears.find((l) => l.role === role && l.expert === expert);
  if (!spec) throw new Error(`decoder graph: the layer has no ${role} Linear${expert === undefined ? '' : ` for expert ${expert}`}`);
  return spec.local;
}

function rotateHalf(g: Graph, x: Value, half: number): Value {
  const x1 = g.op('Slice', [x, g.ints([0]), g.ints([half]), g.ints([-1])]);
  const x2 = g.op('Slice', [x, g.ints([half]), g.ints([2 * half]), g.ints([-1])]);
  return g.op('Concat', [g.op('Neg', [x2]), x1], { axis: -1 });
}

export interface DecoderOptions {
  linear?: LinearFn;
  /** locals of Linears whose inputs are fake-quantized, with their input args (graphs/act-quant.ts) */
  actQuant?: ActQuant;
}

export interface DecoderValues {
  out: Value;
  /** keys and values of all positions (past + new) `[B, nkv, P+S, hd]`, when `past` was given */
  present?: { key: Value; value: Value };
  /** the input activation of each Linear site (before any activation fake-quant) */
  sites: Partial<Record<InputSite, Value>>;
  /** MoE layers: each token's routing weight per expert `[B, T, experts]` (0 where not routed) */
  routing?: Value;
}

export interface DecoderInputs {
  /** hidden states `[B, T, H]` */
  x: Value;
  /** rope tables `[T, head_dim]` */
  cos: Value;
  sin: Value;
  /** additive causal mask `[T, T]` */
  mask: Value;
  /** weight Values by local tensor name, e.g. `self_attn.q_proj.weight`, `input_layernorm.weight` */
  weights: Readonly<Record<string, Value>>;
  /** cached keys/values of earlier positions `[B, nkv, P, hd]` (rope already applied); mask is then `[S, P+S]` */
  past?: { key: Value; value: Value };
}

/** shared closures of one layer's graph: weight lookup and the Linear projection (with activation fake-quant) */
export interface LayerParts {
  g: Graph;
  cfg: ModelConfig;
  linears: readonly LinearSpec[];
  w(name: string): Value;
  proj(local: string, x: Value): Value;
  /** RMSNorm by the named weight with the config's eps and offset */
  norm(x: Value, name: string): Value;
}

export function layerParts(g: Graph, cfg: ModelConfig, linears: readonly LinearSpec[], weights: Readonly<Record<string, Value>>, options: DecoderOptions = {}): LayerParts {
  const linear = options.linear ?? matmulLinear;
  const w = (name: string): Value => {
    const v = weights[name];
    if (!v) throw new Error(`decoder graph: no weight input "${name}"`);
    return v;
  };
  const input = staticInputs(g);
  const proj = (local: string, x: Value): Value => {
    const spec = linears.find((l) => l.local === local);
    const a = options.actQuant?.get(local);
    const xin = a === undefined || !spec ? x : activationFakeQuant(g, x, a, spec.inFeatures, local, input);
    return linear(g, xin, w(`${local}.weight`), spec?.bias ? w(`${local}.bias`) : undefined, local);
  };
  const norm = (x: Value, name: string): Value => rmsNorm(g, x, w(`${name}.weight`), cfg.rmsNormEps, cfg.features.normOffset);
  return { g, cfg, linears, w, proj, norm };
}

/** RMSNorm, q/k/v projections (q/k per-head normed when the config says) and RoPE: q `[B, nh, T, hd]` scaled, k and v `[B, nkv, T, hd]` */
export function attentionInputs(p: LayerParts, x: Value, cos: Value, sin: Value): { attnIn: Value; q: Value; k: Value; v: Value } {
  const { g, cfg } = p;
  const hd = cfg.headDim;
  const attnIn = p.norm(x, 'input_layernorm');
  const heads = (y: Value, n: number): Value => g.transpose(g.reshape(y, [0, 0, n, hd]), [0, 2, 1, 3]);
  const rope = (y: Value): Value => g.add(g.mul(y, cos), g.mul(rotateHalf(g, y, hd / 2), sin));
  const scale = cfg.features.attentionScale ?? 1 / Math.sqrt(hd);
  const q = g.mul(rope(qkNormed(p, heads(p.proj(roleLocal(p.linears, 'q'), attnIn), cfg.numHeads), 'q')), g.scalar(scale));
  const k = rope(qkNormed(p, heads(p.proj(roleLocal(p.linears, 'k'), attnIn), cfg.numKvHeads), 'k'));
  const v = heads(p.proj(roleLocal(p.linears, 'v'), attnIn), cfg.numKvHeads);
  return { attnIn, q, k, v };
}

/** Qwen3 / Gemma 3: RMSNorm over each head's dims (`self_attn.q_norm` / `k_norm`) before RoPE */
function qkNormed(p: LayerParts, y: Value, which: 'q' | 'k'): Value {
  return p.cfg.features.qkNorm ? p.norm(y, `self_attn.${which}_norm`) : y;
}

/** causal softmax attention with grouped kv heads; returns o_proj's input `[B, S, nh·hd]` */
export function attention(g: Graph, cfg: ModelConfig, q: Value, k: Value, v: Value, mask: Value): Value {
  const { numHeads: nh, numKvHeads: nkv, headDim: hd } = cfg;
  // query head h reads kv head h / rep (HF repeat_kv): group the query heads under their kv head
  const qg = g.reshape(q, [0, nkv, nh / nkv, -1, hd]);
  const kg = g.op('Unsqueeze', [k, g.ints([2])]);
  const vg = g.op('Unsqueeze', [v, g.ints([2])]);
  const scores = g.add(g.matmul(qg, g.transpose(kg, [0, 1, 2, 4, 3])), mask);
  const probs = g.op('Softmax', [scores], { axis: -1 });
  const ctx = g.reshape(g.matmul(probs, vg), [0, nh, -1, hd]); // [B, nh, S, hd]
  return g.reshape(g.transpose(ctx, [0, 2, 1, 3]), [0, 0, nh * hd]);
}

/** Gemma 3 norms a block's output before the residual add (post_attention / post_feedforward_layernorm) */
function sandwiched(p: LayerParts, y: Value, name: string): Value {
  return p.cfg.features.sandwichNorms ? p.norm(y, name) : y;
}

/** the dense gated MLP: down(act(gate·x) ⊙ up·x) */
export function gatedMlp(p: LayerParts, x: Value, gate: string, up: string, down: string): { y: Value; downIn: Value } {
  const gv = p.proj(gate, x);
  const uv = p.proj(up, x);
  const downIn = p.g.mul(activation(p.g, p.cfg, gv), uv);
  return { y: p.proj(down, downIn), downIn };
}

export interface MlpValues {
  out: Value;
  mlpIn: Value;
  /** `down_in` of a dense MLP, `down_in.<e>` of each expert */
  sites: Partial<Record<InputSite, Value>>;
  routing?: Value;
}

/** o_proj (+ norm) + residual, RMSNorm, gated MLP or routed experts (+ norm) + residual */
export function outputAndMlp(p: LayerParts, x: Value, oIn: Value): MlpValues {
  const { g, linears } = p;
  const h = g.add(x, sandwiched(p, p.proj(roleLocal(linears, 'o'), oIn), 'post_attention_layernorm'));
  const mlpIn = p.norm(h, mlpInputNorm(p.cfg));
  if (linears.some((l) => l.role === 'router')) {
    const moe = moeBlock(p, mlpIn, (gate, up, down) => gatedMlp(p, mlpIn, gate, up, down));
    return { out: g.add(h, sandwiched(p, moe.y, 'post_feedforward_layernorm')), mlpIn, sites: moe.sites, routing: moe.routing };
  }
  const mlp = gatedMlp(p, mlpIn, roleLocal(linears, 'gate'), roleLocal(linears, 'up'), roleLocal(linears, 'down'));
  return { out: g.add(h, sandwiched(p, mlp.y, 'post_feedforward_layernorm')), mlpIn, sites: { down_in: mlp.downIn } };
}

export function decoderLayer(g: Graph, cfg: ModelConfig, linears: readonly LinearSpec[], inp: DecoderInputs, options: DecoderOptions = {}): DecoderValues {
  const p = layerParts(g, cfg, linears, inp.weights, options);
  const a = attentionInputs(p, inp.x, inp.cos, inp.sin);
  let { k, v } = a;
  if (inp.past) {
    k = g.op('Concat', [inp.past.key, k], { axis: 2 });
    v = g.op('Concat', [inp.past.value, v], { axis: 2 });
  }
  const oIn = attention(g, cfg, a.q, k, v, inp.mask);
  const m = outputAndMlp(p, inp.x, oIn);
  const values: DecoderValues = { out: m.out, sites: { attn_in: a.attnIn, o_in: oIn, mlp_in: m.mlpIn, ...m.sites } };
  if (m.routing) values.routing = m.routing;
  if (inp.past) values.present = { key: k, value: v };
  return values;
}

/** graph inputs for every tensor of a layer, in a stable order */
export function layerWeightInputs(g: Graph, norms: readonly NormSpec[], linears: readonly LinearSpec[]): Record<string, Value> {
  const weights: Record<string, Value> = {};
  for (const n of norms) weights[n.local] = g.input(n.local, 'float32', [n.size]);
  for (const l of linears) {
    weights[`${l.local}.weight`] = g.input(`${l.local}.weight`, 'float32', [l.outFeatures, l.inFeatures]);
    if (l.bias) weights[`${l.local}.bias`] = g.input(`${l.local}.bias`, 'float32', [l.outFeatures]);
  }
  return weights;
}
