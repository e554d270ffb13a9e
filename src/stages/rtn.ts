// Stage `rtn` (Simple PTQ, llm-compressor QuantizationModifier): observer statistics + round-to-nearest for
// every targeted Linear, one step per layer. Needs no calibration data: dynamic activation scales are
// computed at inference time.

import { assignModules, QUANTIZING_PROPERTIES, type QuantizingParams } from './quantizing.js';
import { perLayerSteps, type StageDef } from './stage.js';

export interface RtnStage extends QuantizingParams {
  kind: 'rtn';
  /** absent: the scheme's own weight observer */
  observer?: 'minmax' | 'mse';
}

export const rtnStage: StageDef<RtnStage> = {
  kind: 'rtn',
  properties: { kind: 'always', ...QUANTIZING_PROPERTIES, observer: 'optional' },
  needsCalibration: () => false,
  quantizes: () => true,
  expand(stage, ctx) {
    const modules = assignModules(stage, ctx);
    if (!modules) return;
    perLayerSteps(ctx, 'rtn', (l) => ({ params: { layer: l, modules: modules[l] ?? {} } }));
    ctx.b.resetChain();
  },
};
