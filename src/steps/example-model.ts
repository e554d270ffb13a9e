// Step `example-model`: generate the synthetic example model into the cache, so a recipe can name
// `model: {example: tiny}` and stay offline and reproducible. The model layer writes the weights and the
// tokenizer, the graphs layer samples the text; `quantforge example` writes the same directory.

import type { Json } from '../cache/key.js';
import { sampleExampleText } from '../graphs/example-text.js';
import { writeExampleText, writeExampleWeights, type ExampleOptions } from '../model/example-dir.js';
import type { ModelConfig } from '../model/config.js';
import type { ExampleSize } from '../recipe/types.js';
import { loadTokenizer } from '../model/tokenizer.js';
import type { Runtime } from '../ort/session.js';
import type { StepImpl } from './types.js';

export interface ExampleModelParams {
  size: ExampleSize;
  seed: number;
  dtype: 'f32' | 'bf16';
}

/** the example model as a HuggingFace directory: weights, tokenizer, and calib.txt / eval.txt sampled from it */
export async function writeExampleModel(rt: Runtime, dir: string, o: ExampleOptions): Promise<ModelConfig> {
  const weights = await writeExampleWeights(dir, o);
  const tok = loadTokenizer(dir);
  const text = await sampleExampleText(rt, o.seed, weights.vocabSize, weights.wordIds, (ids) => tok.decode(ids, true));
  await writeExampleText(dir, text, o);
  o.onProgress?.(weights.tensors + 1, weights.tensors + 1, 'text sampled');
  return weights.config;
}

export const exampleModelStep: StepImpl<'example-model', ExampleModelParams> = {
  kind: 'example-model',
  async run(ctx) {
    const cfg = await writeExampleModel(ctx.runtime, ctx.outDir, { ...ctx.params, onProgress: ctx.progress });
    return { layers: cfg.numLayers, hidden: cfg.hiddenSize, vocab: cfg.vocabSize } satisfies Json;
  },
};
