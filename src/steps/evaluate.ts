// Step `evaluate`: perplexity of the full-precision model (`mode: fp`, shared by every variant of a sweep) or
// of the fake-quantized model the stages produced (`mode: quantized`). With `kl`, the fp evaluation also keeps
// what KL(fp ‖ quantized) needs (steps/kl-reference.ts) and the quantized one, given the fp step as input `fp`,
// measures KL on the same pass as its perplexity: the fp model never runs twice. Models with a final logit
// softcap (Gemma 3), whose KL the statistics cannot give, run the fp model beside the quantized one instead.

import { klFromStatistics } from '../graphs/head-graph.js';
import { perplexity } from '../graphs/perplexity.js';
import { HfSource } from '../model/source.js';
import { readIds } from './activations.js';
import { klLayout, klReader, klWriter } from './kl-reference.js';
import { OverlaySource } from './layer-state.js';
import { input, inputList, optionalInput, requireModel, type StepImpl } from './types.js';
import { ReasonedError } from '../diag/failure.js';

export interface EvaluateParams {
  mode: 'fp' | 'quantized';
  /** fp: keep the KL reference; quantized: measure KL from input `fp` */
  kl: boolean;
  batch_size: number | null;
}

export const evaluateStep: StepImpl<'evaluate', EvaluateParams> = {
  kind: 'evaluate',
  async run(ctx) {
    const p = ctx.params;
    const windows = await readIds(input(ctx, 'ids').dir);
    const [n, T] = windows.dims as [number, number];
    const base = await HfSource.open(requireModel(ctx));
    let reference: HfSource | undefined;
    try {
      const H = base.config.hiddenSize;
      const layout = klLayout(n, T, H);
      // KL from the fp evaluation's statistics where the logits allow (head-graph.ts klFromStatistics), else
      // from the fp model run beside the quantized one
      const statistics = klFromStatistics(base.config);
      const fp = p.kl && p.mode === 'quantized' && statistics ? optionalInput(ctx, 'fp') : undefined;
      if (p.kl && p.mode === 'quantized' && statistics && !fp) throw new Error(`step ${ctx.id}: kl needs the fp evaluation as input "fp"`);
      // opened inside the try: if it fails, base is still closed
      reference = p.kl && p.mode === 'quantized' && !statistics ? await HfSource.open(requireModel(ctx)) : undefined;
      const writer = p.kl && p.mode === 'fp' && statistics ? klWriter(ctx.outDir, layout, T, H) : undefined;
      const src = p.mode === 'fp' ? base : new OverlaySource(base, inputList(ctx, 'states'));
      const r = await perplexity(ctx.runtime, src, windows, {
        ...(p.batch_size ? { batch: p.batch_size } : {}),
        onProgress: ctx.progress,
        ...(writer ? { klWrite: writer } : {}),
        ...(fp ? { klRead: klReader(fp.dir, layout, T, H) } : {}),
        ...(reference ? { reference } : {}),
      });
      await writer?.finish();
      if (!Number.isFinite(r.perplexity)) throw new ReasonedError('perplexity-not-finite', `perplexity is ${r.perplexity}: the model produced NaN or Inf`);
      const fpResult = fp?.result as Record<string, unknown> | undefined;
      return {
        perplexity: r.perplexity,
        nll: r.nll,
        tokens: r.tokens,
        windows: r.windows,
        seq_len: r.seqLen,
        seconds: r.seconds,
        ...(writer ? { kl_windows: layout.windows } : {}),
        ...(r.kl !== undefined ? { kl: r.kl, kl_windows: r.klWindows ?? 0 } : {}),
        ...(typeof fpResult?.['perplexity'] === 'number' ? { fp_perplexity: fpResult['perplexity'] } : {}),
      };
    } finally {
      await reference?.close();
      await base.close();
    }
  },
};
