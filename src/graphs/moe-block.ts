// A Mixture-of-Experts block (Mixtral's block_sparse_moe, Qwen3-MoE's sparse mlp) as graph ops, computed
// densely: every expert runs on every token and the routed combination Σₑ wₑ·expertₑ(x) keeps only the top-k
// experts of each token (wₑ = 0 elsewhere). That is exact, and it is what calibration wants: every expert's
// inputs (`down_in.<e>`) see every token, as llm-compressor's moe_calibrate_all_experts, while the layer output
// is the routed one. The cost is experts/top_k times the routed MLP FLOPs, fine for small models; a sparse
// path (gather the routed tokens per expert) is left for later.
//
// Routing (HF MixtralSparseMoeBlock / Qwen3MoeSparseMoeBlock): p = softmax(router·x); keep the top-k p of each
// token; renormalise them to sum 1 when `normTopK`. The top-k selection is a one-hot of TopK's indices (ties
// go to the lower expert index, as onnxruntime's TopK orders them), so gradients reach the kept p only.

import type { Graph, Value } from '../ort/graph.js';
import { tensor } from '../tensor.js';
import type { InputSite, LinearSpec } from '../model/arch.js';
import type { ModelConfig } from '../model/config.js';

/** what the block needs of a layer's graph parts (decoder-graph.ts LayerParts) */
export interface ExpertParts {
  g: Graph;
  cfg: ModelConfig;
  linears: readonly LinearSpec[];
  proj(local: string, x: Value): Value;
}

/** the dense gated MLP of one expert, from its gate/up/down locals */
export type ExpertMlp = (gate: string, up: string, down: string) => { y: Value; downIn: Value };

/** routing weights `[..., experts]` from router logits `[..., experts]`: top-k softmax probabilities, 0 elsewhere */
export function routingWeights(g: Graph, cfg: ModelConfig, logits: Value): Value {
  const moe = cfg.features.moe;
  if (!moe) throw new Error('routing weights: the config has no experts');
  const probs = g.op('Softmax', [logits], { axis: -1 });
  const [, indices] = g.opN('TopK', [probs, g.ints([moe.topK])], 2, { axis: -1, largest: 1, sorted: 1 });
  const ids = g.constant(tensor('int64', [moe.experts], BigInt64Array.from({ length: moe.experts }, (_, e) => BigInt(e))), 'expert_ids');
  const hit = g.op('Equal', [g.op('Unsqueeze', [{ name: indices!.name, dtype: 'int64' }, g.ints([-1])]), ids], {}, { dtype: 'bool' }); // [..., k, E]
  const mask = g.reduceMax(g.cast(hit, 'float32'), [-2], false);
  const kept = g.mul(probs, mask);
  return moe.normTopK ? g.div(kept, g.reduceSum(kept, [-1])) : kept;
}

/** the experts of a layer in index order: [gate, up, down] locals */
export function expertLocals(linears: readonly LinearSpec[]): [string, string, string][] {
  const experts = [...new Set(linears.flatMap((l) => (l.expert === undefined ? [] : [l.expert])))].sort((a, b) => a - b);
  const find = (role: string, e: number): string => linears.find((l) => l.role === role && l.expert === e)!.local;
  return experts.map((e) => [find('gate', e), find('up', e), find('down', e)]);
}

/** Σₑ wₑ·expertₑ(x) over every expert, with the routing weights and each expert's down_proj input */
export function moeBlock(p: ExpertParts, x: Value, expertMlp: ExpertMlp): { y: Value; routing: Value; sites: Partial<Record<InputSite, Value>> } {
  const { g, linears } = p;
  const router = linears.find((l) => l.role === 'router');
  if (!router) throw new Error('moe block: the layer has no router');
  const routing = routingWeights(g, p.cfg, p.proj(router.local, x));
  const sites: Partial<Record<InputSite, Value>> = {};
  let y: Value | undefined;
  for (const [e, [gate, up, down]] of expertLocals(linears).entries()) {
    const out = expertMlp(gate, up, down);
    sites[`down_in.${e}`] = out.downIn;
    const w = g.op('Slice', [routing, g.ints([e]), g.ints([e + 1]), g.ints([-1])]);
    const part = g.mul(out.y, w);
    y = y ? g.add(y, part) : part;
  }
  if (!y) throw new Error('moe block: the layer has no experts');
  return { y, routing, sites };
}
