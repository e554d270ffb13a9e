// Step `gptq-hessian`: one shard of one decoder layer's GPTQ calibration (recipe `parallel.calibration_shards`
// K > 1). It reads its range of whole batches of its calibration inputs (the GPTQ chain's `hidden`: only those
// windows' bytes, by offset; hessian-partials.ts shardWindows), runs the layer as the previous stage left it
// over them with the same float32 XᵀX tap per batch as the gptq step (gptq-job.ts), on the same batches, and
// stores their float64 sums per Linear input site with their token count (hessian-partials.ts); the layer's
// gptq step sums the K shards, normalises and solves: the one-pass Hessians up to the float64 addition order.
// Shards of one layer are independent: on a job queue, K workers run them at once.

import type { InputSite } from '../model/arch.js';
import { forEachBatch, hiddenDims, layerBatch, readHiddenWindows } from './activations.js';
import { addGrams, gramBuffers, hostGram, xtxTap } from './gptq-job.js';
import { shardWindows, writeHessianPartial } from './hessian-partials.js';
import { actQuantOf, openLayerInput } from './layer-state.js';
import { addRanges, withRanges } from './static-inputs.js';
import { input, type StepImpl } from './types.js';

export interface GptqHessianParams {
  layer: number;
  /** the input sites whose XᵀX the layer's gptq step needs (those of the Linears it quantizes) */
  sites: string[];
  /** the sites whose max |x| static input quantization needs */
  range_sites: string[];
  /** 0-based shard index, < shards */
  shard: number;
  shards: number;
}

export const gptqHessianStep: StepImpl<'gptq-hessian', GptqHessianParams> = {
  kind: 'gptq-hessian',
  async run(ctx) {
    const p = ctx.params;
    const { src, state } = await openLayerInput(ctx, p.layer);
    try {
      const cfg = src.config;
      const layer = src.arch.layer(cfg, p.layer);
      const linears = layer.linears;
      const sites = p.sites as InputSite[];
      const rangeSites = p.range_sites as InputSite[];
      const widths = new Map<InputSite, number>();
      for (const l of linears) if (!widths.has(l.site)) widths.set(l.site, l.inFeatures);
      const unknown = [...sites, ...rangeSites].filter((s) => !widths.has(s));
      if (unknown.length > 0) throw new Error(`gptq-hessian layer ${p.layer}: ${unknown.join(', ')} are not input sites of the layer; expected some of: ${[...widths.keys()].join(', ')}`);
      const width = (s: InputSite): number => widths.get(s) as number;

      const dir = input(ctx, 'hidden').dir;
      const [N, T] = await hiddenDims(dir);
      const [start, end] = shardWindows(N, p.shard, p.shards, layerBatch(cfg, T));
      const mine = await readHiddenWindows(dir, start, end);
      const xtx = new Map(sites.map((s) => [s, new Float64Array(width(s) ** 2)] as const));
      const ranges = new Map<InputSite, number>();
      const t0 = performance.now();
      if (end > start) {
        const tap = withRanges(xtxTap(sites, width, false, hostGram(ctx.runtime)), rangeSites)!;
        const options = { tap, skipOut: true, actQuant: actQuantOf(state.quant), layer: p.layer, into: gramBuffers(sites, width, hostGram(ctx.runtime)) };
        await forEachBatch(ctx.runtime, cfg, layer, state.tensors, mine, options, async (out) => {
          addRanges(ranges, out, rangeSites);
          await addGrams(ctx.runtime, xtx, out);
        }, (done, total) => ctx.progress(done, total, `capture ${sites.join(', ')}`));
      } else {
        for (const s of rangeSites) ranges.set(s, 0);
      }
      const tokens = (end - start) * T;
      await writeHessianPartial(ctx.outDir, { xtx, ranges, tokens });
      return {
        layer: p.layer,
        shard: p.shard,
        shards: p.shards,
        windows: [start, end],
        tokens,
        timing_ms: { capture: Math.round((performance.now() - t0) * 10) / 10 },
      };
    } finally {
      await src.close();
    }
  },
};
