// Step `evaluate-onnx`: perplexity of the exported ONNX model itself (MatMulNBits / MatMulInteger kernels),
// to check the export against the fake-quantized evaluation.

import { OnnxModel } from '../../graphs/onnx-model.js';
import { readIds } from '../../steps/activations.js';
import { input, type StepImpl } from '../../steps/types.js';
import { ReasonedError } from '../../diag/failure.js';

export interface EvaluateOnnxParams {
  /** windows per onnxruntime call; null: about 2048 tokens per call */
  batch_size: number | null;
}

export const evaluateOnnxStep: StepImpl<'evaluate-onnx', EvaluateOnnxParams> = {
  kind: 'evaluate-onnx',
  async run(ctx) {
    const windows = await readIds(input(ctx, 'ids').dir);
    const model = await OnnxModel.openDir(ctx.runtime, input(ctx, 'onnx').dir);
    try {
      const r = await model.perplexity(windows, { ...(ctx.params.batch_size ? { batch: ctx.params.batch_size } : {}), onProgress: ctx.progress });
      if (!Number.isFinite(r.perplexity)) throw new ReasonedError('perplexity-not-finite', `ONNX perplexity is ${r.perplexity}: the exported model produced NaN or Inf`);
      return { perplexity: r.perplexity, nll: r.nll, tokens: r.tokens, windows: r.windows, seq_len: r.seqLen, seconds: r.seconds };
    } finally {
      await model.close();
    }
  },
};
