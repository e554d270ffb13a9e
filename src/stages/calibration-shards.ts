// Data-parallel calibration (recipe `parallel.calibration_shards` K > 1): a GPTQ layer's XᵀX capture becomes
// K `gptq-hessian` steps over disjoint calibration window ranges, planned beside the layer's gptq step, which
// takes them as its `partials` input and does the one solve. With K = 1 nothing is planned and the gptq step
// captures its Hessians itself, so plans and keys are those of a recipe without the key.

import { isMoeLayer } from '../model/arch.js';
import type { ModuleQuant } from '../quant/module-quant.js';
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
