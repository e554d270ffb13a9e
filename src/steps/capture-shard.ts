// Step `capture-shard`: one shard of one decoder layer's SmoothQuant/AWQ activation statistics (recipe
// `parallel.calibration_shards` K > 1). It reads its range of whole batches of the layer's calibration inputs
// (hessian-partials.ts shardWindows; only those windows' bytes, by offset), runs the layer as the previous
// stage left it over them with the capture step's taps, on the one-pass capture's batches, and stores per
// module max |x| or the float64 sum Σ|x| with its token count (capture-partials.ts); the layer's capture step
// reduces the K shards. Shards of one layer are independent: on a job queue, K workers run them at once.

import { HfSource } from '../model/source.js';
import { hiddenDims, layerBatch, readHiddenWindows } from './activations.js';
import { captureSums, checkStatistic, type CaptureParams } from './capture.js';
import { writePartialStats } from './capture-partials.js';
import { shardWindows } from './hessian-partials.js';
import { loadLayerInput } from './layer-state.js';
import { input, optionalInput, requireModel, type StepImpl } from './types.js';

export interface CaptureShardParams extends CaptureParams {
  /** 0-based shard index, < shards */
  shard: number;
  shards: number;
}

export const captureShardStep: StepImpl<'capture-shard', CaptureShardParams> = {
  kind: 'capture-shard',
  async run(ctx) {
    const { layer, statistic, modules, shard, shards } = ctx.params;
    checkStatistic(statistic);
    const src = await HfSource.open(requireModel(ctx));
    try {
      const state = await loadLayerInput(src, optionalInput(ctx, 'state'), layer);
      const dir = input(ctx, 'hidden').dir;
      const [N, T] = await hiddenDims(dir);
      const [start, end] = shardWindows(N, shard, shards, layerBatch(src.config, T));
      const hidden = await readHiddenWindows(dir, start, end);
      const t0 = performance.now();
      const sums = await captureSums({ rt: ctx.runtime, src, layer, statistic, modules, state, hidden, progress: ctx.progress });
      const tokens = (end - start) * (hidden.dims[1] as number);
      await writePartialStats(ctx.outDir, { statistic, sums, tokens, windows: [start, end, N] });
      return { layer, statistic, shard, shards, windows: [start, end], tokens, timing_ms: { capture: Math.round((performance.now() - t0) * 10) / 10 } };
    } finally {
      await src.close();
    }
  },
};
