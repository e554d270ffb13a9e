// Step `smoothquant`: fold SmoothQuant's per-channel scales into one decoder layer. For each mapping the scales
// come from the captured max |X| of its balance layers' shared input and the balance weights' column maxima;
// the smooth op (RMSNorm weight or a Linear's rows) is divided by them and the balance columns multiplied, so
// the layer computes the same function with flatter activations. The folded tensors are then rounded to the
// dtype the checkpoint stores them in (bf16, fp16), as torch smooths in the model dtype. Nothing is quantized here.

import { smoothquantScales, summarizeScales } from '../algo/smoothquant.js';
import type { Json } from '../cache/key.js';
import type { Mapping } from '../model/arch.js';
import { readStatistic } from './capture.js';
import { openLayerInput, roundToStoredDtypes, writeLayerState } from './layer-state.js';
import { checkSmoothable, foldScales, mappingSite, weightMatrix } from './smoothing.js';
import { input, type StepImpl } from './types.js';

export interface SmoothQuantParams {
  layer: number;
  smoothing_strength: number;
  mappings: Mapping[];
}

export const smoothquantStep: StepImpl<'smoothquant', SmoothQuantParams> = {
  kind: 'smoothquant',
  async run(ctx) {
    const { layer, smoothing_strength: alpha, mappings } = ctx.params;
    const { src, state } = await openLayerInput(ctx, layer);
    try {
      const { linears } = src.arch.layer(src.config, layer);
      const stats = input(ctx, 'stats').dir;
      const report: Json[] = [];
      for (const [i, m] of mappings.entries()) {
        checkSmoothable(state, m);
        mappingSite(m, linears);
        const act = await readStatistic(stats, m.balance[0]!, 'absmax');
        const s = smoothquantScales(act, m.balance.map((b) => weightMatrix(state.tensors, b, layer)), alpha);
        foldScales(state.tensors, m, s, layer, src.config.features.normOffset);
        report.push({ smooth: m.smooth, balance: [...m.balance], scale: { ...summarizeScales(s) } });
        ctx.progress(i + 1, mappings.length, m.smooth);
      }
      await roundToStoredDtypes(src, state);
      await writeLayerState(ctx.outDir, state);
      return { layer, smoothing_strength: alpha, mappings: report };
    } finally {
      await src.close();
    }
  },
};
