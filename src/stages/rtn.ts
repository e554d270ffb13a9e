// Stage `rtn` (Simple PTQ, llm-compressor QuantizationModifier): observer statistics + round-to-nearest for
// every targeted Linear, one step per layer. Needs no calibration data: dynamic activation scales are
// computed at inference time.

import type { RtnStage } from '../recipe/types.js';
import { assignModules, json, perLayerSteps, type StageDef } from './stage.js';

export const rtnStage: StageDef<RtnStage> = {
  kind: 'rtn',
  needsCalibration: () => false,
  quantizes: () => true,
  expand(stage, ctx) {
    const modules = assignModules(stage, ctx);
    if (!modules) return;
    perLayerSteps(ctx, 'rtn', (l) => ({ params: { modules: json(modules[l]) } }));
    ctx.b.resetChain();
  },
};
