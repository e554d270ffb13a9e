// Data-parallel calibration (recipe `parallel.calibration_shards` K > 1): a GPTQ layer's XᵀX capture becomes
// K `gptq-hessian` steps over disjoint calibration window ranges, planned beside the layer's gptq step, which
// takes them as its `partials` input and does the one solve; a SmoothQuant or AWQ layer's activation
// statistics become K `capture-shard` steps, which the layer's capture step reduces (max, or float64 sums and
// token counts), and each AWQ mapping's candidate search becomes K `awq-loss` steps and an awq step that sums
// them and folds the chosen scales, which the next mapping's shards read. With K = 1 nothing is planned and the
// gptq, capture and awq steps do their own passes, so plans and keys are those of a recipe without the key.
// The chain of layer inputs the shards read stays one step per layer over every window: it is shared with the
// 1-shard plan and the stages after, and each shard reads only its own windows of it.

import { isMoeLayer } from '../model/arch.js';
import type { ModuleQuant } from '../quant/module-quant.js';
import type { AwqParams } from '../steps/awq.js';
import type { Statistic } from '../steps/capture-statistic.js';
import { staticSites } from '../steps/static-inputs.js';
import type { StageContext } from './stage.js';
import type { StepId } from './step-plan.js';

/**
 * the `gptq-hessian` shard steps of layer `layer`, reading the chain's `hidden` and the layer's state as the
 * previous stage left it; undefined for one shard
 */
export function hessianShards(ctx: StageContext, layer: number, hidden: StepId, modules: Readonly<Record<string, ModuleQuant>>): StepId[] | undefined {
  const shards = ctx.calibrationShards;
  if (shards <= 1) return undefined;
  // a Mixture-of-Experts layer also counts the tokens its router sends each expert: it captures itself
  if (isMoeLayer(ctx.b.config, layer)) return undefined;
  const linears = ctx.b.arch.layer(ctx.b.config, layer).linears;
  const sites = [...new Set(linears.filter((l) => modules[l.local]).map((l) => l.site))];
  const rangeSites = staticSites(linears, modules);
  const out: StepId[] = [];
  for (let shard = 0; shard < shards; shard++) {
    out.push(
      ctx.b.add({
        id: `${ctx.prefix}/layer.${layer}.shard.${shard}`,
        kind: 'gptq-hessian',
        params: { layer, sites, range_sites: rangeSites, shard, shards },
        inputs: { hidden, state: ctx.b.state[layer] },
        readsModel: true,
        origin: ctx.origin,
        group: ctx.group,
      }),
    );
  }
  return out;
}

/**
 * The `capture` step of layer `layer` (statistic of `modules`' inputs over the layer's calibration inputs
 * `hidden`, under the layer's state as the previous stage left it): one step for one shard (which also writes the
 * chain's next link when it has none: the same forward pass), else the reduce of K `capture-shard` steps (the
 * chain's next link is then an ordinary chain step)
 */
export function captureStatistics(ctx: StageContext, layer: number, statistic: Statistic, modules: string[], hidden: StepId): StepId {
  const shards = ctx.calibrationShards;
  const common = { readsModel: true, origin: ctx.origin, group: ctx.group };
  const state = ctx.b.state[layer];
  if (shards <= 1) {
    // when the chain has no step for layer + 1 yet, the same forward pass writes it (the step becomes that link)
    const next = ctx.b.chainOpen(layer + 1);
    const params = { layer, statistic, modules, ...(next ? { next_hidden: true } : {}) };
    const id = ctx.b.add({ id: `${ctx.prefix}/capture.${layer}`, kind: 'capture', params, inputs: { hidden, state }, ...common });
    if (next) ctx.b.provideChain(layer + 1, id);
    return id;
  }
  const partials: StepId[] = [];
  for (let shard = 0; shard < shards; shard++) {
    partials.push(
      ctx.b.add({
        id: `${ctx.prefix}/capture.${layer}.shard.${shard}`,
        kind: 'capture-shard',
        params: { layer, statistic, modules, shard, shards },
        inputs: { hidden, state },
        ...common,
      }),
    );
  }
  return ctx.b.add({ id: `${ctx.prefix}/capture.${layer}`, kind: 'capture', params: { layer, statistic, modules }, inputs: { partials }, ...common, readsModel: false });
}

/** what a layer's own awq step reads when its search is sharded: its mapping, the layer as the mapping before left it, the shards */
export interface AwqShardedSearch {
  mapping: number;
  state: StepId | undefined;
  partials: StepId[];
}

/**
 * The sharded search of layer `params.layer`'s AWQ mappings (one shard or no mapping: undefined, the awq step
 * searches them all itself): per mapping, K `awq-loss` steps over the chain's `hidden` on the layer as the
 * previous mapping left it, and for every mapping but the last an awq step of its own (`…/layer.3.mapping.0`)
 * that sums them, folds the scales and writes the layer for the next mapping; the last mapping's search is the
 * layer's awq step, which also quantizes
 */
export function awqLossShards(ctx: StageContext, params: AwqParams, hidden: StepId, stats: StepId): AwqShardedSearch | undefined {
  const shards = ctx.calibrationShards;
  const { layer, mappings } = params;
  if (shards <= 1 || mappings.length === 0) return undefined;
  const common = { readsModel: true, origin: ctx.origin, group: ctx.group };
  let state = ctx.b.state[layer];
  for (let mapping = 0; ; mapping++) {
    const partials: StepId[] = [];
    for (let shard = 0; shard < shards; shard++) {
      const id = `${ctx.prefix}/layer.${layer}.mapping.${mapping}.shard.${shard}`;
      partials.push(ctx.b.add({ id, kind: 'awq-loss', params: { ...params, mapping, shard, shards }, inputs: { hidden, stats, state }, ...common }));
    }
    if (mapping === mappings.length - 1) return { mapping, state, partials };
    state = ctx.b.add({ id: `${ctx.prefix}/layer.${layer}.mapping.${mapping}`, kind: 'awq', params: { ...params, mapping }, inputs: { state, stats, partials }, ...common });
  }
}
