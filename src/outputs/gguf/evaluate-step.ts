// Step `evaluate-gguf`: perplexity of the written GGUF file itself, its tensors dequantized as llama.cpp's
// dequantize_row_<type> does (model/gguf-source.ts), to check the file against the fake-quantized evaluation.

import { join } from 'node:path';
import { perplexity } from '../../graphs/perplexity.js';
import { GgufSource } from '../../model/gguf-source.js';
import { readIds } from '../../steps/activations.js';
import { input, type StepImpl } from '../../steps/types.js';
import { ReasonedError } from '../../diag/failure.js';
import { GGUF_FILE } from './gguf-file.js';

export interface EvaluateGgufParams {
  /** windows per onnxruntime call; null: about 2048 tokens per call */
  batch_size: number | null;
}

export const evaluateGgufStep: StepImpl<'evaluate-gguf', EvaluateGgufParams> = {
  kind: 'evaluate-gguf',
  async run(ctx) {
    const windows = await readIds(input(ctx, 'ids').dir);
    const source = await GgufSource.open(join(input(ctx, 'gguf').dir, GGUF_FILE));
    try {
      const r = await perplexity(ctx.runtime, source, windows, { ...(ctx.params.batch_size ? { batch: ctx.params.batch_size } : {}), onProgress: ctx.progress });
      if (!Number.isFinite(r.perplexity)) throw new ReasonedError('perplexity-not-finite', `GGUF perplexity is ${r.perplexity}: the file's weights produced NaN or Inf`);
      return { perplexity: r.perplexity, nll: r.nll, tokens: r.tokens, windows: r.windows, seq_len: r.seqLen, seconds: r.seconds };
    } finally {
      await source.close();
    }
  },
};
