// Calibration of Mixture-of-Experts layers: which experts the router actually sent calibration tokens to, and
// the named rule an expert that got none is quantized by. Every expert's statistics come from every token
// (the decoder graph runs all experts densely, as llm-compressor's moe_calibrate_all_experts), so such an
// expert never sees an empty Hessian or a NaN mean; what changes is what its quantization rests on, and the
// step says so as a warning and in its metrics:
//   all-tokens  GPTQ (and the smoothing stages): the expert's Hessian and statistics from every calibration
//               token pushed through it, though the router sends it none of them
//   rtn         AutoRound: the block loss does not depend on an unrouted expert, so its rounding offsets and
//               min/max factors get no gradient and stay at their start, round-to-nearest

import type { Json } from '../cache/key.js';
import type { LayerTap } from '../graphs/layer-runner.js';
import type { LinearSpec } from '../model/arch.js';
import type { Graph, Value } from '../ort/graph.js';

export const UNROUTED_RULES = {
  'all-tokens': 'Hessian and input statistics from every calibration token sent through the expert (calibrate-all-experts)',
  rtn: 'round-to-nearest: AutoRound gets no gradient for an expert the router never picks',
} as const;
export type UnroutedRule = keyof typeof UNROUTED_RULES;

/** tokens routed to each expert (routing weight > 0), summed over batch and time: output `routed` [experts] */
export function routedCount(g: Graph, routing: Value): Value {
  const picked = g.cast(g.op('Greater', [routing, g.scalar(0)], {}, { dtype: 'bool' }), 'float32');
  return g.reduceSum(picked, [0, 1], false);
}

/** a tap that only counts routed tokens (for steps without a capture pass of their own) */
export const routedTap: LayerTap = {
  key: 'experts.routed',
  build: (g, v): Record<string, Value> => (v.routing ? { routed: routedCount(g, v.routing) } : {}),
};

/** accumulates the `routed` outputs of a layer's batches */
export class RoutedTokens {
  readonly #counts: number[] = [];

  add(out: Readonly<Record<string, { data: ArrayLike<number | bigint> }>>): void {
    const r = out['routed'];
    if (!r) return;
    Array.from(r.data, Number).forEach((v, e) => (this.#counts[e] = (this.#counts[e] ?? 0) + v));
  }

  get counts(): readonly number[] {
    return this.#counts;
  }
}

export interface ExpertReport {
  metrics: Json;
  warnings: string[];
}

/**
 * What the step's metrics and warnings say about a MoE layer's experts: tokens routed to each, and for every
 * expert the router sent no calibration token, its quantized modules and the rule they fell back to.
 */
export function expertReport(layer: number, prefix: string, linears: readonly LinearSpec[], quantized: readonly string[], routed: readonly number[], tokens: number, rule: UnroutedRule): ExpertReport | undefined {
  if (!linears.some((l) => l.role === 'router')) return undefined;
  const unrouted: Json[] = [];
  const warnings: string[] = [];
  routed.forEach((count, expert) => {
    if (count > 0) return;
    const modules = linears.filter((l) => l.expert === expert && quantized.includes(l.local)).map((l) => `${prefix}${l.local}`);
    if (modules.length === 0) return;
    unrouted.push({ expert, modules, rule });
    warnings.push(`layer ${layer} expert ${expert}: the router sent it none of the ${tokens} calibration tokens; ${modules.join(', ')} quantized by rule "${rule}" (${UNROUTED_RULES[rule]})`);
  });
  return { metrics: { routed_tokens: [...routed], tokens, unrouted }, warnings };
}
