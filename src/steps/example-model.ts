// Step `example-model`: generate the synthetic example model into the cache, so a recipe can name
// `model: {example: tiny}` and stay offline and reproducible.

import type { Json } from '../cache/key.js';
import { writeExampleModel } from '../model/example-dir.js';
import type { ExampleSize } from '../model/example-model.js';
import type { StepImpl } from './types.js';

export interface ExampleModelParams {
  size: ExampleSize;
  seed: number;
  dtype: 'f32' | 'bf16';
}

export const exampleModelStep: StepImpl<ExampleModelParams> = {
  kind: 'example-model',
  version: 1,
  async run(ctx) {
    const cfg = await writeExampleModel(ctx.runtime, ctx.outDir, { ...ctx.params, onProgress: ctx.progress });
    return { layers: cfg.numLayers, hidden: cfg.hiddenSize, vocab: cfg.vocabSize } satisfies Json;
  },
};
