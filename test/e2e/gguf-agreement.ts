// quantforge and llama.cpp on one GGUF file: llama.cpp's mean NLL on the evaluation windows and greedy tokens,
// quantforge's greedy tokens on the file's weights (GgufSource: dequantized as llama.cpp does), and where the
// two greedy continuations part, quantforge's own margin between the two candidates (the near-tie rule of
// gguf-llama-cpp.test.ts: llama.cpp's CPU matmuls round activations to 8 bits, which moves logits by a few
// hundredths of a nat, so tokens must be equal, or part only where quantforge's two candidates are within
// NEAR_TIE nats; every comparison says which).

import { generate } from '../../src/graphs/generate.js';
import { perplexity } from '../../src/graphs/perplexity.js';
import { GgufSource } from '../../src/model/gguf-source.js';
import type { Runtime } from '../../src/ort/session.js';
import { tensor, type Tensor } from '../../src/tensor.js';
import { llamaGreedy, llamaMeanNll, withLlamaModel } from './llama-cpp.js';

export const NEAR_TIE = 0.1;

export interface Agreement {
  /** llama.cpp's mean NLL over the windows */
  readonly llamaNll: number;
  /** 'equal', or where and by how much quantforge's candidates differ where the continuations part */
  readonly greedy: string;
  /** quantforge's margin at the first parting token; 0 when equal */
  readonly margin: number;
  readonly ours: readonly number[];
  readonly theirs: readonly number[];
}

async function sequenceNll(rt: Runtime, source: GgufSource, ids: readonly number[]): Promise<number> {
  const r = await perplexity(rt, source, tensor('int32', [1, ids.length], Int32Array.from(ids)));
  return r.nll * (ids.length - 1);
}

export async function agreement(rt: Runtime, path: string, windows: Tensor<'int32'>, prompt: readonly number[], newTokens: number): Promise<Agreement> {
  const T = windows.dims[1] as number;
  const theirs = await withLlamaModel(path, async (m) => ({ nll: await llamaMeanNll(m, windows.data, T), greedy: await llamaGreedy(m, prompt, newTokens) }));
  const source = await GgufSource.open(path);
  try {
    const [ours] = await generate(rt, source, [[...prompt]], { maxNewTokens: newTokens });
    const k = ours!.findIndex((t, i) => t !== theirs.greedy[i]);
    if (k < 0) return { llamaNll: theirs.nll, greedy: 'equal', margin: 0, ours: ours!, theirs: theirs.greedy };
    const margin = (await sequenceNll(rt, source, [...ours!.slice(0, k), theirs.greedy[k]!])) - (await sequenceNll(rt, source, ours!.slice(0, k + 1)));
    return { llamaNll: theirs.nll, greedy: `parted at new token ${k - prompt.length + 1} by ${margin.toFixed(4)} nats`, margin, ours: ours!, theirs: theirs.greedy };
  } finally {
    await source.close();
  }
}
