// AutoRound's reported output errors: per target, ‖X(W − Q)ᵀ‖² / ‖XWᵀ‖² over the full-precision block's Linear
// inputs X, for the learned Q and for round-to-nearest's, from one pass of the layer with a tap (steps/autoround.ts).

import type { LayerSpec } from '../model/arch.js';
import type { ModelConfig } from '../model/config.js';
import type { Graph, Value } from '../ort/graph.js';
import type { Runtime } from '../ort/session.js';
import type { ActQuant } from '../quant/module-quant.js';
import { tensor, type Tensor } from '../tensor.js';
import { forEachBatch } from './activations.js';
import { routedCount, type RoutedTokens } from './experts.js';

/**
 * per target: ‖X(W − Q)ᵀ‖² / ‖XWᵀ‖² over the full-precision block's Linear inputs X, for autoround's and rtn's
 * Q; the same pass counts the tokens the router sends each expert (MoE blocks) into `routed`
 */
export async function outputErrors(
  rt: Runtime,
  cfg: ModelConfig,
  layer: LayerSpec,
  routed: RoutedTokens,
  fp: Readonly<Record<string, Tensor<'float32'>>>,
  x: Tensor<'float32'>,
  actQuant: ActQuant,
  quantized: Readonly<Record<string, { autoround: Float32Array; rtn: Float32Array }>>,
): Promise<Record<string, { autoround: number; rtn: number }>> {
  if (Object.keys(quantized).length === 0) return {};
  const linears = layer.linears;
  const feeds: Record<string, Tensor> = { ...fp };
  const kinds = ['autoround', 'rtn'] as const;
  for (const [local, q] of Object.entries(quantized)) {
    const w = fp[`${local}.weight`]!;
    for (const k of kinds) feeds[`${local}.delta_${k}`] = tensor('float32', w.dims, w.data.map((v, i) => v - (q[k][i] as number)));
  }
  const build = (g: Graph, sites: Partial<Record<string, Value>>, routing: Value | undefined): Record<string, Value> => {
    const out: Record<string, Value> = routing ? { routed: routedCount(g, routing) } : {};
    const energy = (xv: Value, w: Value): Value => {
      const yv = g.matmul(xv, g.transpose(w, [1, 0]));
      return g.op('ReduceSum', [g.mul(yv, yv)], { keepdims: 0 });
    };
    for (const local of Object.keys(quantized)) {
      const l = linears.find((s) => s.local === local)!;
      const xv = sites[l.site]!;
      out[`${local}:fp`] = energy(xv, { name: `${local}.weight`, dtype: 'float32' });
      for (const k of kinds) out[`${local}:${k}`] = energy(xv, g.input(`${local}.delta_${k}`, 'float32', [l.outFeatures, l.inFeatures]));
    }
    return out;
  };
  const sums = new Map<string, number>();
  const tap = { key: `autoround.errors:${Object.keys(quantized).join(',')}`, build: (g: Graph, v: { sites: Partial<Record<string, Value>>; routing?: Value }) => build(g, v.sites, v.routing) };
  await forEachBatch(rt, cfg, layer, feeds, x, { tap, skipOut: true, actQuant }, (out) => {
    routed.add(out);
    for (const [k, t] of Object.entries(out)) if (k !== 'routed') sums.set(k, (sums.get(k) ?? 0) + (t.data[0] as number));
  });
  const ratio = (local: string, k: string): number => (sums.get(`${local}:${k}`) ?? 0) / Math.max(sums.get(`${local}:fp`) ?? 0, Number.MIN_VALUE);
  return Object.fromEntries(Object.keys(quantized).map((local) => [local, { autoround: ratio(local, 'autoround'), rtn: ratio(local, 'rtn') }]));
}
