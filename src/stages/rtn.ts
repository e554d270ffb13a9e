// Stage `rtn` (Simple PTQ, llm-compressor QuantizationModifier): observer statistics + round-to-nearest for
// every targeted Linear, one step per layer. Schemes with dynamic (or no) input quantization need no
// calibration data. Schemes with static input ranges (FP8's input_scale, NVFP4's input_global_scale) calibrate
// them on the quantized model, layer after layer as llm-compressor's sequential pipeline does: the stage's
// steps are then their own calibration chain, like GPTQ's.

import { assignModules, checkSchemeRules, GGUF_QPARAMS, hasStaticInputs, MINMAX_FOR_FLOAT, QUANTIZING_PROPERTIES, type QuantizingParams } from './quantizing.js';
import { chainedLayerSteps, perLayerSteps, type StageDef } from './stage.js';

export interface RtnStage extends QuantizingParams {
  kind: 'rtn';
  /** absent: the scheme's own weight observer */
  observer?: 'minmax' | 'mse';
}

export const rtnStage: StageDef<RtnStage> = {
  kind: 'rtn',
  properties: { kind: 'always', ...QUANTIZING_PROPERTIES, observer: 'optional' },
  needsCalibration: hasStaticInputs,
  quantizes: () => true,
  check: (stage, ctx) => checkSchemeRules(stage, ctx, [MINMAX_FOR_FLOAT, GGUF_QPARAMS]),
  expand(stage, ctx) {
    const modules = assignModules(stage, ctx);
    if (!modules) return;
    const params = (l: number) => ({ params: { layer: l, modules: modules[l] ?? {} } });
    if (hasStaticInputs(stage)) {
      chainedLayerSteps(ctx, 'rtn', params);
      return;
    }
    perLayerSteps(ctx, 'rtn', params);
    ctx.b.resetChain();
  },
};
