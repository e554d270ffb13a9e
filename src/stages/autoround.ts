// Stage `autoround` (SignRound, Cheng et al. 2023): per decoder block, learn rounding offsets and min/max
// clipping factors with signSGD. Like intel/auto-round with enable_quanted_input, each block trains on the
// outputs of the blocks already quantized (the stage's own chain) against the full-precision block's
// outputs on full-precision inputs (the chain of the model entering the stage).

import type { AutoRoundStage } from '../recipe/types.js';
import { assignModules, json, perLayerSteps, type StageDef } from './stage.js';

export const autoroundStage: StageDef<AutoRoundStage> = {
  kind: 'autoround',
  needsCalibration: () => true,
  quantizes: () => true,
  expand(stage, ctx) {
    const modules = assignModules(stage, ctx);
    if (!modules) return;
    const embed = ctx.b.chain(0);
    const steps = perLayerSteps(ctx, 'autoround', (l, previous) => ({
      params: {
        modules: json(modules[l]),
        iters: stage.iters,
        lr: stage.lr ?? 1 / Math.max(1, stage.iters),
        minmax_lr: stage.minmax_lr ?? stage.lr ?? 1 / Math.max(1, stage.iters),
        batch_size: stage.batch_size,
        nsamples: stage.nsamples,
        enable_minmax_tuning: stage.enable_minmax_tuning,
        not_use_best_mse: stage.not_use_best_mse,
        seed: stage.seed,
      },
      inputs: { hidden: previous ?? embed, reference: ctx.b.chain(l) },
    }));
    ctx.b.replaceChain(steps);
  },
};
