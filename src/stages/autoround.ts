// Stage `autoround` (SignRound, Cheng et al. 2023): per decoder block, learn rounding offsets and min/max
// clipping factors with signSGD. Like intel/auto-round with enable_quanted_input, each block trains on the
// outputs of the blocks already quantized (the stage's own chain) against the full-precision block's
// outputs on full-precision inputs (the chain of the model entering the stage).

import { errorAt } from '../diag/diagnostic.js';
import { assignModules, checkSchemeRules, DYNAMIC_INPUTS_ONLY, GGUF_QPARAMS, ggufBlocksOnly, intWeightsOnly, QUANTIZING_PROPERTIES, type QuantizingParams } from './quantizing.js';
import { chainedLayerSteps, type StageDef } from './stage.js';

export interface AutoRoundStage extends QuantizingParams {
  kind: 'autoround';
  iters: number;
  /** null: 1 / iters */
  lr: number | null;
  /** null: lr */
  minmax_lr: number | null;
  batch_size: number;
  /** null: calibration.samples */
  nsamples: number | null;
  /** null: calibration.seq_len */
  seqlen: number | null;
  enable_minmax_tuning: boolean;
  not_use_best_mse: boolean;
  seed: number;
}

export const autoroundStage: StageDef<AutoRoundStage> = {
  kind: 'autoround',
  properties: {
    kind: 'always',
    ...QUANTIZING_PROPERTIES,
    iters: 'always',
    lr: 'always',
    minmax_lr: 'always',
    batch_size: 'always',
    nsamples: 'always',
    seqlen: 'always',
    enable_minmax_tuning: 'always',
    not_use_best_mse: 'always',
    seed: 'always',
  },
  needsCalibration: () => true,
  quantizes: () => true,
  unshardable:
    "AutoRound's signSGD iterations each start from the rounding the previous one left, so a shard of its batches cannot be a step of its own: splitting a batch across machines needs an all-reduce of the gradients in every iteration, as llm-compressor's AutoRound DDP does, not one reduce per layer",
  /** nsamples and seqlen must agree with the calibration block, which makes the windows */
  check(stage, ctx) {
    checkSchemeRules(stage, ctx, [
      ggufBlocksOnly(
        'autoround',
        "its block graph computes a block's qparams from the learned min/max factors in one pass; the K-quants' 6-bit sub-scales and sub-minimums come from ggml's iterative searches (make_qkx2_quants, make_qx_quants), which are not built as graph ops",
      ),
      GGUF_QPARAMS,
      intWeightsOnly('the AutoRound block graph learns rounding offsets and min/max factors on integer grids'),
      DYNAMIC_INPUTS_ONLY,
    ]);
    const calib = ctx.calibration;
    if (!calib) return;
    if (stage.seqlen !== null && stage.seqlen !== calib.seq_len) {
      ctx.diagnostics.push(errorAt('autoround-seqlen', `autoround seqlen ${stage.seqlen} differs from calibration.seq_len ${calib.seq_len}; set calibration.seq_len instead`, ctx.locate(['seqlen'])));
    }
    if (stage.nsamples !== null && stage.nsamples > calib.samples) {
      ctx.diagnostics.push(errorAt('autoround-nsamples', `autoround nsamples ${stage.nsamples} exceeds calibration.samples ${calib.samples}`, ctx.locate(['nsamples'])));
    }
  },
  expand(stage, ctx) {
    const modules = assignModules(stage, ctx);
    if (!modules) return;
    chainedLayerSteps(ctx, 'autoround', (l) => ({
      params: {
        layer: l,
        modules: modules[l] ?? {},
        iters: stage.iters,
        lr: stage.lr ?? 1 / Math.max(1, stage.iters),
        minmax_lr: stage.minmax_lr ?? stage.lr ?? 1 / Math.max(1, stage.iters),
        batch_size: stage.batch_size,
        nsamples: stage.nsamples,
        enable_minmax_tuning: stage.enable_minmax_tuning,
        not_use_best_mse: stage.not_use_best_mse,
        seed: stage.seed,
      },
      // the full-precision block's outputs are the next link of the same chain (planned anyway for layer l + 1)
      inputs: { reference: ctx.b.chain(l), ...(l + 1 < ctx.b.config.numLayers ? { target: ctx.b.chain(l + 1) } : {}) },
    }));
  },
};
