// Step `awq-loss`: one shard of one AWQ mapping's candidate search on one decoder layer (recipe
// `parallel.calibration_shards` K > 1). It reads its range of whole batches of the layer's calibration inputs
// (hessian-partials.ts shardWindows; only those windows' bytes, by offset), takes the layer as the mapping's
// previous awq step left it (earlier mappings folded), and stores what the one-pass search sums over those
// windows (awq-search.ts, on the same chunks): each candidate's float64 sum of squared parent-module output
// errors, or a Linear parent's input XᵀX, with the token count (awq-partials.ts). The mapping's awq step sums
// the K shards, picks the scales and folds them. Shards of one mapping are independent: K workers run them at once.

import { awqGrid, candidateMatrix } from '../algo/awq.js';
import { releaseAwqKernels } from '../graphs/awq-kernel.js';
import { hiddenDims, layerBatch, readHiddenWindows } from './activations.js';
import type { AwqParams } from './awq.js';
import { scalesDigest, writeLossPartial, type LossPartial } from './awq-partials.js';
import { linearInputGram, mappingSearch, moduleSums } from './awq-search.js';
import { shardWindows } from './hessian-partials.js';
import { actQuantOf, openLayerInput } from './layer-state.js';
import { SmoothingStepError } from './smoothing.js';
import { input, type StepImpl } from './types.js';

export interface AwqLossParams extends AwqParams {
  /** the index in `mappings` of the mapping searched (those before it are folded in the input state) */
  mapping: number;
  /** 0-based shard index, < shards */
  shard: number;
  shards: number;
}

export const awqLossStep: StepImpl<'awq-loss', AwqLossParams> = {
  kind: 'awq-loss',
  async run(ctx) {
    const { layer, modules, mappings, mapping, duo_scaling: duo, n_grid: nGrid, shard, shards } = ctx.params;
    const m = mappings[mapping];
    if (!m) throw new SmoothingStepError('bad-mapping', `awq-loss layer ${layer}: mapping ${mapping} of ${mappings.length} does not exist`);
    const { src, state } = await openLayerInput(ctx, layer);
    try {
      const cfg = src.config;
      const layerSpec = src.arch.layer(cfg, layer);
      const dir = input(ctx, 'hidden').dir;
      const [N, T] = await hiddenDims(dir);
      const [start, end] = shardWindows(N, shard, shards, layerBatch(cfg, T));
      const setup = { rt: ctx.runtime, layer, cfg, layerSpec, state, stats: input(ctx, 'stats').dir, modules, duo, actQuant: actQuantOf(state.quant) };
      const search = await mappingSearch(setup, m);
      const tokens = (end - start) * T;
      const partial: LossPartial = { tokens, windows: [start, end, N] };
      const t0 = performance.now();
      if (search) {
        const hidden = await readHiddenWindows(dir, start, end);
        const p = search.problem;
        if (p.parent.kind === 'linear') {
          const cols = layerSpec.linears.find((l) => l.local === p.parent.balance[0])!.inFeatures;
          partial.sums = { kind: 'gram', data: end > start ? await linearInputGram(p, hidden) : new Float64Array(cols * cols), dims: [cols, cols] };
        } else {
          const candidates = awqGrid(duo, nGrid);
          const scales = candidateMatrix({ xMean: search.xMean, wMean: search.wMean, candidates });
          const K = candidates.length;
          partial.sums = { kind: 'sse', data: end > start ? await moduleSums(p, hidden, scales, K) : new Float64Array(K), dims: [K] };
          partial.scales = scalesDigest(scales);
        }
      }
      await releaseAwqKernels(ctx.runtime);
      await writeLossPartial(ctx.outDir, partial);
      return {
        layer,
        mapping,
        smooth: m.smooth,
        shard,
        shards,
        windows: [start, end],
        tokens,
        ...(search ? { parent: search.problem.parent.kind } : { skipped: 'no balance layer is quantized' }),
        timing_ms: { losses: Math.round((performance.now() - t0) * 10) / 10 },
      };
    } finally {
      await src.close();
    }
  },
};
