// Stage `smoothquant` (Xiao et al. 2022): per layer, a `capture` step records max|X| per input channel of
// each mapping's balance layers, then a `smoothquant` step folds s = max|X|^α / max|W|^(1−α) into the norm
// and the Linears. The transform leaves the model's function unchanged, so the captures run on the chain
// of the model entering the stage and are shared by every smoothing_strength of a sweep. With
// parallel.calibration_shards K > 1 each capture is K capture-shard steps and their reduce (max of maxima).

import { captureStatistics } from './calibration-shards.js';
import { resolveMappings, type SmoothMapping } from './mappings.js';
import { perLayerSteps, type StageDef } from './stage.js';

export interface SmoothQuantStage {
  kind: 'smoothquant';
  /** α in [0, 1] (the schema checks it, algo/smoothquant.ts declares it: SMOOTHING_STRENGTH) */
  smoothing_strength: number;
  /** absent: the architecture's default mappings */
  mappings?: SmoothMapping[];
  ignore: string[];
}

export const smoothquantStage: StageDef<SmoothQuantStage> = {
  kind: 'smoothquant',
  properties: { kind: 'always', smoothing_strength: 'always', mappings: 'optional', ignore: 'always' },
  needsCalibration: () => true,
  quantizes: () => false,
  shardsCalibration: true,
  expand(stage, ctx) {
    const perLayer = resolveMappings(ctx, stage.mappings, (l) => ctx.b.arch.smoothquantMappings(ctx.b.config, l), stage.ignore);
    if (!perLayer) return;
    perLayerSteps(ctx, 'smoothquant', (l) => {
      const mappings = perLayer[l]!;
      const sites = [...new Set(mappings.map((m) => m.balance[0]!))];
      const capture = captureStatistics(ctx, l, 'absmax', sites, ctx.b.chain(l));
      return { params: { layer: l, smoothing_strength: stage.smoothing_strength, mappings }, inputs: { stats: capture } };
    });
  },
};
