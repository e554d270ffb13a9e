// Step `evaluate-onnx`: perplexity of the exported ONNX model itself (MatMulNBits / MatMulInteger kernels),
// to check the export against the fake-quantized evaluation.

import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { parseModelConfig } from '../../model/config.js';
import { OnnxModel } from '../../graphs/onnx-model.js';
import { readIds } from '../../steps/activations.js';
import { input, type StepImpl } from '../../steps/types.js';

export const evaluateOnnxStep: StepImpl<{ batch_size: number | null }> = {
  kind: 'evaluate-onnx',
  version: 1,
  async run(ctx) {
    const windows = await readIds(input(ctx, 'ids').dir);
    const dir = input(ctx, 'onnx').dir;
    const config = parseModelConfig(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>);
    const model = await OnnxModel.open(ctx.runtime, dir, config);
    try {
      const r = await model.perplexity(windows, { ...(ctx.params.batch_size ? { batch: ctx.params.batch_size } : {}), onProgress: ctx.progress });
      if (!Number.isFinite(r.perplexity)) throw new Error(`ONNX perplexity is ${r.perplexity}: the exported model produced NaN or Inf`);
      return { perplexity: r.perplexity, nll: r.nll, tokens: r.tokens, windows: r.windows, seq_len: r.seqLen, seconds: r.seconds };
    } finally {
      await model.close();
    }
  },
};
