// Stage `awq` (Lin et al. 2023): per layer, a `capture` step records mean|X| per input channel of each
// mapping's balance layers; an `awq` step grid-searches per-channel scales on the layer's calibration inputs,
// folds them, and (when the stage has a scheme) quantizes. As in llm-awq, calibration inputs come from the
// model entering the stage (scaling alone preserves the function), so sweeps over duo_scaling or n_grid
// share the captures.

import type { AwqStage } from '../recipe/types.js';
import { assignModules, json, perLayerSteps, type StageDef } from './stage.js';
import { resolveMappings } from './mappings.js';

export const awqStage: StageDef<AwqStage> = {
  kind: 'awq',
  needsCalibration: () => true,
  quantizes: (stage) => stage.scheme !== undefined || stage.config_groups !== undefined,
  expand(stage, ctx) {
    const mappings = resolveMappings(ctx, stage.mappings, ctx.b.arch.awqMappings, stage.ignore);
    const quantizes = awqStage.quantizes(stage);
    const modules = quantizes ? assignModules(stage, ctx) : [];
    if (!mappings || !modules) return;
    const sites = [...new Set(mappings.map((m) => m.balance[0]!))];
    perLayerSteps(ctx, 'awq', (l) => {
      const hidden = ctx.b.chain(l);
      const capture = ctx.b.add({
        id: `${ctx.prefix}/capture.${l}`,
        kind: 'capture',
        params: { layer: l, statistic: 'absmean', modules: sites },
        inputs: { hidden, state: ctx.b.state[l] },
        readsModel: true,
        origin: ctx.origin,
        group: ctx.group,
      });
      return {
        params: { modules: json(modules[l] ?? {}), mappings: json(mappings), duo_scaling: stage.duo_scaling, n_grid: stage.n_grid },
        inputs: { stats: capture, hidden },
      };
    });
    if (quantizes) ctx.b.resetChain();
  },
};
