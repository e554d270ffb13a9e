// Step `evaluate`: perplexity of the full-precision model (`mode: fp`, shared by every variant of a sweep) or
// of the fake-quantized model the stages produced (`mode: quantized`), with KL(fp ‖ quantized) of the
// next-token distributions measured in the same pass.

import { perplexity } from '../graphs/perplexity.js';
import { HfSource } from '../model/source.js';
import { readIds } from './activations.js';
import { OverlaySource } from './layer-state.js';
import { input, inputList, requireModel, type StepImpl } from './types.js';
import { ReasonedError } from '../diag/failure.js';

export interface EvaluateParams {
  mode: 'fp' | 'quantized';
  kl: boolean;
  batch_size: number | null;
}

export const evaluateStep: StepImpl<'evaluate', EvaluateParams> = {
  kind: 'evaluate',
  version: 1,
  async run(ctx) {
    const windows = await readIds(input(ctx, 'ids').dir);
    const base = await HfSource.open(requireModel(ctx));
    let reference: HfSource | undefined;
    try {
      // opened inside the try: if it fails, base is still closed
      reference = ctx.params.mode === 'quantized' && ctx.params.kl ? await HfSource.open(requireModel(ctx)) : undefined;
      const src = ctx.params.mode === 'fp' ? base : new OverlaySource(base, inputList(ctx, 'states'));
      const r = await perplexity(ctx.runtime, src, windows, {
        ...(ctx.params.batch_size ? { batch: ctx.params.batch_size } : {}),
        onProgress: ctx.progress,
        ...(reference ? { reference } : {}),
      });
      if (!Number.isFinite(r.perplexity)) throw new ReasonedError('perplexity-not-finite', `perplexity is ${r.perplexity}: the model produced NaN or Inf`);
      return {
        perplexity: r.perplexity,
        nll: r.nll,
        tokens: r.tokens,
        windows: r.windows,
        seq_len: r.seqLen,
        seconds: r.seconds,
        ...(r.kl !== undefined ? { kl: r.kl } : {}),
        ...(r.referencePerplexity !== undefined ? { fp_perplexity: r.referencePerplexity } : {}),
      };
    } finally {
      await base.close();
      await reference?.close();
    }
  },
};
