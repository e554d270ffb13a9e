// Stage `gptq` (Frantar et al. 2022): sequential per layer. Each layer's step calibrates on the outputs of the
// layers this stage already quantized, quantizes the layer, and passes its quantized outputs on, so the
// stage's steps form their own calibration chain (an interrupted run resumes at the first unfinished layer).
// Every scheme works: the qparams (NVFP4's global and group scales, MX and FP8 scales included) are fixed
// before the column pass and each column is rounded onto its grid, as llm-compressor does.
// With parallel.calibration_shards K > 1, each layer's XᵀX capture is K shard steps (calibration-shards.ts).

import type { ActOrder } from '../quant/scheme.js';
import { assignModules, checkSchemeRules, GGUF_QPARAMS, MINMAX_FOR_FLOAT, QUANTIZING_PROPERTIES, type QuantizingParams } from './quantizing.js';
import { chainedLayerSteps, type StageDef } from './stage.js';
import { hessianShards } from './calibration-shards.js';

export interface GptqStage extends QuantizingParams {
  kind: 'gptq';
  block_size: number;
  dampening_frac: number;
  actorder: ActOrder | null;
  offload_hessians: boolean;
}

export const gptqStage: StageDef<GptqStage> = {
  kind: 'gptq',
  properties: { kind: 'always', ...QUANTIZING_PROPERTIES, block_size: 'always', dampening_frac: 'always', actorder: 'always', offload_hessians: 'always' },
  needsCalibration: () => true,
  quantizes: () => true,
  shardsCalibration: true,
  check: (stage, ctx) =>
    checkSchemeRules(stage, ctx, [
      MINMAX_FOR_FLOAT,
      GGUF_QPARAMS,
      (s) =>
        s.weights?.type === 'float' && s.weights.strategy === 'group' && (s.weights.actorder ?? stage.actorder) === 'group'
          ? 'actorder "group" records weight_g_idx, which the fp4 and fp8 compressed-tensors formats do not store; use actorder "static" or null'
          : undefined,
    ]),
  expand(stage, ctx) {
    const modules = assignModules(stage, ctx);
    if (!modules) return;
    chainedLayerSteps(ctx, 'gptq', (l, hidden) => ({
      inputs: { partials: hessianShards(ctx, l, hidden, modules[l] ?? {}) },
      params: {
        layer: l,
        modules: modules[l] ?? {},
        block_size: stage.block_size,
        dampening_frac: stage.dampening_frac,
        actorder: stage.actorder,
        offload_hessians: stage.offload_hessians,
      },
    }));
  },
};
