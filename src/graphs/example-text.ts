// The example model's calib.txt and eval.txt: text sampled (temperature 1) from the tiny example model with the
// given seed. Sampling the large sizes token by token would take minutes, so every size uses the text of the
// tiny model with the same seed (same tokenizer).

import { exampleSource } from '../model/example-dir.js';
import { exampleModelConfig } from '../model/example-model.js';
import type { Runtime } from '../ort/session.js';
import { generate } from './generate.js';

const SEQUENCES = 128;
const TOKENS_PER_SEQUENCE = 128;
const CALIBRATION_SEQUENCES = 80;

export async function sampleExampleText(rt: Runtime, seed: number, vocabSize: number, wordIds: readonly number[], decode: (ids: number[]) => string): Promise<{ calib: string; eval: string }> {
  const cfg = exampleModelConfig('tiny', vocabSize);
  const prompts = Array.from({ length: SEQUENCES }, () => [1]);
  // whole-word pieces only, so the text re-encodes to the very ids that were sampled
  const seqs = await generate(rt, exampleSource(cfg, seed), prompts, { maxNewTokens: TOKENS_PER_SEQUENCE, temperature: 1, seed: seed + 1, allowedIds: wordIds });
  const texts = seqs.map((s) => decode(s.slice(1)).trim());
  return { calib: texts.slice(0, CALIBRATION_SEQUENCES).join('\n\n') + '\n', eval: texts.slice(CALIBRATION_SEQUENCES).join('\n\n') + '\n' };
}
