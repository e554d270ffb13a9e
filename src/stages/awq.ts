// Stage `awq` (Lin et al. 2023): per layer, a `capture` step records mean|X| per input channel of each
// mapping's balance layers; an `awq` step grid-searches per-channel scales on the layer's calibration inputs,
// folds them, and (when the stage has a scheme) quantizes. As in llm-awq, calibration inputs come from the
// model entering the stage (scaling alone preserves the function), so sweeps over duo_scaling or n_grid
// share the captures. With parallel.calibration_shards K > 1 each capture is K capture-shard steps and their
// reduce (float64 sums of |x| and token counts), and each mapping's candidate losses K awq-loss steps summed by
// an awq step per mapping, which folds the chosen scales before the next mapping's shards run.

import type { DuoScaling } from '../algo/awq.js';
import { awqLossShards, captureStatistics } from './calibration-shards.js';
import { resolveMappings, type SmoothMapping } from './mappings.js';
import { assignModules, checkSchemeRules, DYNAMIC_INPUTS_ONLY, ggufBlocksOnly, intWeightsOnly, QUANTIZING_PROPERTIES, type QuantizingParams } from './quantizing.js';
import { perLayerSteps, type StageDef } from './stage.js';

export interface AwqStage extends QuantizingParams {
  kind: 'awq';
  duo_scaling: DuoScaling;
  n_grid: number;
  /** absent: the architecture's default mappings */
  mappings?: SmoothMapping[];
}

const quantizes = (stage: AwqStage): boolean => stage.scheme !== undefined || stage.config_groups !== undefined;

export const awqStage: StageDef<AwqStage> = {
  kind: 'awq',
  properties: { kind: 'always', ...QUANTIZING_PROPERTIES, duo_scaling: 'always', n_grid: 'always', mappings: 'optional' },
  needsCalibration: () => true,
  quantizes,
  shardsCalibration: true,
  describe: (stage) => (quantizes(stage) ? 'awq' : 'awq without scheme or config_groups'),
  check: (stage, ctx) =>
    checkSchemeRules(stage, ctx, [
      ggufBlocksOnly('awq', "its candidate losses need the block quantizer as graph ops, and the K-quants' sub-scale searches (make_qkx2/make_qx_quants) are iterative loops not built as graph ops"),
      intWeightsOnly("AWQ scores its candidate scales with integer min-max fake quantization (llm-compressor 0.8's AWQModifier)"),
      DYNAMIC_INPUTS_ONLY,
    ]),
  expand(stage, ctx) {
    const perLayer = resolveMappings(ctx, stage.mappings, (l) => ctx.b.arch.awqMappings(ctx.b.config, l), stage.ignore);
    const modules = quantizes(stage) ? assignModules(stage, ctx) : [];
    if (!perLayer || !modules) return;
    perLayerSteps(ctx, 'awq', (l) => {
      const mappings = perLayer[l]!;
      const sites = [...new Set(mappings.map((m) => m.balance[0]!))];
      const hidden = ctx.b.chain(l);
      const capture = captureStatistics(ctx, l, 'absmean', sites, hidden);
      const params = { layer: l, modules: modules[l] ?? {}, mappings, duo_scaling: stage.duo_scaling, n_grid: stage.n_grid };
      const sharded = awqLossShards(ctx, params, hidden, capture);
      if (!sharded) return { params, inputs: { stats: capture, hidden } };
      return { params: { ...params, mapping: sharded.mapping }, inputs: { state: sharded.state, stats: capture, partials: sharded.partials } };
    });
    if (quantizes(stage)) ctx.b.resetChain();
  },
};
