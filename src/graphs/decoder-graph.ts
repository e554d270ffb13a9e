// One Llama-family decoder layer as an ONNX graph built from basic ops (so the same builder also serves the
// differentiated AutoRound block): RMSNorm → q/k/v → RoPE (rotate_half) → GQA causal softmax attention → o_proj
// → residual → RMSNorm → SiLU-gated MLP → residual. Weights are graph inputs named by their local names
// (`self_attn.q_proj.weight`), so one session serves every layer of the same shape.

import type { Graph, Value } from '../ort/graph.js';
import type { ActQuant } from '../quant/module-quant.js';
import { activationFakeQuant, staticInputs } from './act-quant.js';
import type { InputSite, LinearSpec } from '../model/arch.js';
import type { ModelConfig } from '../model/config.js';

/** x · Wᵀ (+ b) for activations `[..., in]` and a weight `[out, in]` */
export type LinearFn = (g: Graph, x: Value, w: Value, bias: Value | undefined, local: string) => Value;

export const matmulLinear: LinearFn = (g, x, w, bias) => {
  const y = g.matmul(x, g.transpose(w, [1, 0]));
  return bias ? g.add(y, bias) : y;
};

export function rmsNorm(g: Graph, x: Value, w: Value, eps: number): Value {
  const variance = g.reduceMean(g.mul(x, x), [-1]);
  const normed = g.div(x, g.op('Sqrt', [g.add(variance, g.scalar(eps))]));
  return g.mul(normed, w);
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
  sites: Record<InputSite, Value>;
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
  w(name: string): Value;
  proj(local: string, x: Value): Value;
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
  return { g, cfg, w, proj };
}

/** RMSNorm, q/k/v projections and RoPE: q `[B, nh, T, hd]` scaled by 1/√hd, k and v `[B, nkv, T, hd]` */
export function attentionInputs(p: LayerParts, x: Value, cos: Value, sin: Value): { attnIn: Value; q: Value; k: Value; v: Value } {
  const { g, cfg } = p;
  const hd = cfg.headDim;
  const attnIn = rmsNorm(g, x, p.w('input_layernorm.weight'), cfg.rmsNormEps);
  const heads = (y: Value, n: number): Value => g.transpose(g.reshape(y, [0, 0, n, hd]), [0, 2, 1, 3]);
  const rope = (y: Value): Value => g.add(g.mul(y, cos), g.mul(rotateHalf(g, y, hd / 2), sin));
  const q = g.mul(rope(heads(p.proj('self_attn.q_proj', attnIn), cfg.numHeads)), g.scalar(1 / Math.sqrt(hd)));
  const k = rope(heads(p.proj('self_attn.k_proj', attnIn), cfg.numKvHeads));
  const v = heads(p.proj('self_attn.v_proj', attnIn), cfg.numKvHeads);
  return { attnIn, q, k, v };
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

/** o_proj + residual, RMSNorm, SiLU-gated MLP + residual */
export function outputAndMlp(p: LayerParts, x: Value, oIn: Value): { out: Value; mlpIn: Value; downIn: Value } {
  const { g, cfg } = p;
  const h = g.add(x, p.proj('self_attn.o_proj', oIn));
  const mlpIn = rmsNorm(g, h, p.w('post_attention_layernorm.weight'), cfg.rmsNormEps);
  const gate = p.proj('mlp.gate_proj', mlpIn);
  const up = p.proj('mlp.up_proj', mlpIn);
  const downIn = g.mul(g.mul(gate, g.op('Sigmoid', [gate])), up);
  return { out: g.add(h, p.proj('mlp.down_proj', downIn)), mlpIn, downIn };
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
  const { out, mlpIn, downIn } = outputAndMlp(p, inp.x, oIn);
  const sites = { attn_in: a.attnIn, o_in: oIn, mlp_in: mlpIn, down_in: downIn };
  return inp.past ? { out, sites, present: { key: k, value: v } } : { out, sites };
}

/** graph inputs for every tensor of a layer, in a stable order */
export function layerWeightInputs(g: Graph, cfg: ModelConfig, linears: readonly LinearSpec[]): Record<string, Value> {
  const H = cfg.hiddenSize;
  const weights: Record<string, Value> = {
    'input_layernorm.weight': g.input('input_layernorm.weight', 'float32', [H]),
    'post_attention_layernorm.weight': g.input('post_attention_layernorm.weight', 'float32', [H]),
  };
  for (const l of linears) {
    weights[`${l.local}.weight`] = g.input(`${l.local}.weight`, 'float32', [l.outFeatures, l.inFeatures]);
    if (l.bias) weights[`${l.local}.bias`] = g.input(`${l.local}.bias`, 'float32', [l.outFeatures]);
  }
  return weights;
}
