// A model directory opened for `quantforge eval` and `quantforge generate`: perplexity under the DESIGN.md §6
// protocol and greedy generation, whatever runs the model. `openWeights` serves any WeightSource (a
// HuggingFace or compressed-tensors directory, read layer by layer); an output format whose directories run
// as a whole (ONNX) gives its own OpenedModel (src/outputs/<format>/).

import type { ModelConfig } from '../model/config.js';
import type { WeightSource } from '../model/source.js';
import type { Runtime } from '../ort/session.js';
import type { Tensor } from '../tensor.js';
import { generate } from './generate.js';
import { perplexity, type PerplexityOptions, type PerplexityResult } from './perplexity.js';

export interface OpenedModel {
  readonly dir: string;
  /** `hf`, or the output format that recognised the directory */
  readonly format: string;
  readonly config: ModelConfig;
  perplexity(windows: Tensor<'int32'>, options?: PerplexityOptions): Promise<PerplexityResult>;
  /** greedy continuation of one prompt (prompt included), stopping at EOS */
  generate(prompt: number[], maxNewTokens: number): Promise<number[]>;
  close(): Promise<void>;
}

export function openWeights(rt: Runtime, format: string, source: WeightSource): OpenedModel {
  return {
    dir: source.dir,
    format,
    config: source.config,
    perplexity: (windows, options) => perplexity(rt, source, windows, options),
    generate: async (prompt, maxNewTokens) => (await generate(rt, source, [prompt], { maxNewTokens, stopAtEos: true }))[0]!,
    close: () => source.close(),
  };
}
