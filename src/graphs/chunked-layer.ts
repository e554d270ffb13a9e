// A decoder layer for long sequences, in three memoised graphs so attention scores never exceed a budget:
// (1) norm + q/k/v + RoPE, (2) attention for one chunk of query positions at a time, (3) o_proj + MLP. The
// pieces are the same graph builders as the single-graph layer (decoder-graph.ts), so results agree.

import { Graph } from '../ort/graph.js';
import type { Kernel, Runtime } from '../ort/session.js';
import { tensor, type Tensor } from '../tensor.js';
import type { LayerSpec } from '../model/arch.js';
import { actQuantKey, type ActQuant } from '../quant/module-quant.js';
import type { ModelConfig } from '../model/config.js';
import { attention, attentionInputs, layerParts, layerWeightInputs, outputAndMlp } from './decoder-graph.js';
import { layerShapeKey } from './layer-shape.js';
import { positionInputs } from './rope.js';

/** bytes of attention scores one onnxruntime call may hold */
export const SCORE_BUDGET = 64 * 2 ** 20;

export function needsChunking(cfg: ModelConfig, batch: number, T: number): boolean {
  return batch * cfg.numHeads * T * T * 4 > SCORE_BUDGET;
}

function key(cfg: ModelConfig, layer: LayerSpec, aq: ActQuant, part: string): string {
  return `decoder-${part}:${layerShapeKey(cfg, layer.linears, layer.norms)}:${actQuantKey(aq)}`;
}

function kernels(rt: Runtime, cfg: ModelConfig, layer: LayerSpec, aq: ActQuant): Promise<[Kernel, Kernel, Kernel]> {
  const { linears, norms } = layer;
  const H = cfg.hiddenSize;
  const hd = cfg.headDim;
  return Promise.all([
    rt.kernel(key(cfg, layer, aq, 'qkv'), () => {
      const g = new Graph('decoder_qkv');
      const p = layerParts(g, cfg, linears, layerWeightInputs(g, norms, linears), { actQuant: aq });
      const a = attentionInputs(p, g.input('x', 'float32', ['B', 'T', H]), g.input('cos', 'float32', ['T', hd]), g.input('sin', 'float32', ['T', hd]));
      g.output(a.q, 'q');
      g.output(a.k, 'k');
      g.output(a.v, 'v');
      return g;
    }),
    rt.kernel(key(cfg, layer, aq, 'attention'), () => {
      const g = new Graph('decoder_attention_chunk');
      const q = g.input('q', 'float32', ['B', cfg.numHeads, 'C', hd]);
      const k = g.input('k', 'float32', ['B', cfg.numKvHeads, 'T', hd]);
      const v = g.input('v', 'float32', ['B', cfg.numKvHeads, 'T', hd]);
      g.output(attention(g, cfg, q, k, v, g.input('mask', 'float32', ['C', 'T'])), 'o_in');
      return g;
    }),
    rt.kernel(key(cfg, layer, aq, 'mlp'), () => {
      const g = new Graph('decoder_out_mlp');
      const p = layerParts(g, cfg, linears, layerWeightInputs(g, norms, linears), { actQuant: aq });
      const x = g.input('x', 'float32', ['B', 'T', H]);
      g.output(outputAndMlp(p, x, g.input('o_in', 'float32', ['B', 'T', cfg.numHeads * hd])).out, 'out');
      return g;
    }),
  ]);
}

function rowsSlice(t: Tensor<'float32'>, axis2From: number, axis2To: number): Tensor<'float32'> {
  // t is [B, heads, T, hd]; take positions [from, to) of every (batch, head)
  const [B, Hh, T, hd] = t.dims as [number, number, number, number];
  const n = axis2To - axis2From;
  const out = new Float32Array(B * Hh * n * hd);
  for (let bh = 0; bh < B * Hh; bh++) out.set(t.data.subarray((bh * T + axis2From) * hd, (bh * T + axis2To) * hd), bh * n * hd);
  return tensor('float32', [B, Hh, n, hd], out);
}

/** one layer over hidden states `[B, T, H]` with attention computed in chunks of query positions */
export async function runLayerChunked(rt: Runtime, cfg: ModelConfig, layer: LayerSpec, weights: Readonly<Record<string, Tensor>>, x: Tensor<'float32'>, actQuant: ActQuant): Promise<Tensor<'float32'>> {
  const [B, T] = x.dims as [number, number];
  const [qkv, attn, mlp] = await kernels(rt, cfg, layer, actQuant);
  const { cos, sin, mask } = positionInputs(cfg, layer.attention, T);
  const feed = (k: Kernel, base: Record<string, Tensor>): Record<string, Tensor> => {
    const feeds = { ...base };
    for (const n of k.inputNames) if (!(n in feeds)) feeds[n] = weights[n]!;
    return feeds;
  };
  const { q, k, v } = await qkv.run(feed(qkv, { x, cos, sin }));
  const chunk = Math.max(1, Math.floor(SCORE_BUDGET / (B * cfg.numHeads * T * 4)));
  const width = cfg.numHeads * cfg.headDim;
  const oIn = new Float32Array(B * T * width);
  for (let s = 0; s < T; s += chunk) {
    const e = Math.min(T, s + chunk);
    const m = tensor('float32', [e - s, T], mask.data.subarray(s * T, e * T));
    const part = (await attn.run({ q: rowsSlice(q as Tensor<'float32'>, s, e), k: k!, v: v!, mask: m }))['o_in']!.data as Float32Array;
    for (let b = 0; b < B; b++) oIn.set(part.subarray(b * (e - s) * width, (b + 1) * (e - s) * width), (b * T + s) * width);
  }
  return (await mlp.run(feed(mlp, { x, o_in: tensor('float32', [B, T, width], oIn) })))['out'] as Tensor<'float32'>;
}
