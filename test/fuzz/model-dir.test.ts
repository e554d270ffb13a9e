// Fuzzing the files of a model directory (targets/model-dir.ts): config.json, tokenizer.json and the
// checkpoint index with its shards, each case ending in ok or a named error naming the file.

import { describe, expect, test } from 'vitest';
import { formatOutcomes, runFuzz, runOnce } from './harness.js';
import type { JsonMutation } from './json-mutation.js';
import { checkpointIndexTarget, configJsonTarget, tokenizerJsonTarget } from './targets/model-dir.js';

describe('fuzz: model directory files', () => {
  for (const target of [configJsonTarget, tokenizerJsonTarget, checkpointIndexTarget]) {
    test(`${target.name}: every case ends in ok or a named error naming the file`, async () => {
      const report = await runFuzz(target as typeof configJsonTarget);
      console.log(`${report.target}: ${report.runs} cases in ${report.seconds.toFixed(1)} s: ${formatOutcomes(report.outcomes)}`);
      expect(report.outcomes.get('ok') ?? 0).toBeGreaterThan(0);
      // every named error is a malformed input or recipe: the CLI exits 2 for it, never 1 (a failed step)
      expect(report.exits.get(1) ?? 0).toBe(0);
    });
  }
});

// inputs that broke the readers as they were, each fixed in src
const CONFIG_REGRESSIONS: Record<string, { input: JsonMutation[]; outcome: string }> = {
  // HfSource listed every tensor of every layer before checking one: 10^15 layers never finished (out of memory)
  'num_hidden_layers 10^15': { input: [{ kind: 'set-key', key: 'num_hidden_layers', value: 1e15 }], outcome: 'missing-tensor' },
  // accepted: the first allocation of a [vocab, hidden] buffer threw a RangeError much later
  'vocab_size -1': { input: [{ kind: 'set-key', key: 'vocab_size', value: -1 }], outcome: 'bad-field' },
  // accepted (head_dim 0 / 8 = 0 is "even"), and the weights' shapes were never compared with it
  'hidden_size 0': { input: [{ kind: 'set-key', key: 'hidden_size', value: 0 }], outcome: 'bad-field' },
};

describe('fuzz regressions: config.json', () => {
  for (const [name, { input, outcome }] of Object.entries(CONFIG_REGRESSIONS)) {
    test(name, async () => expect(await runOnce(configJsonTarget, input)).toBe(outcome));
  }
});

// found with seed 20251205 once the harness failed cases that print: the tokenizers library only warned
// ("Unknown pattern type: {}") and skipped the Replace or Split, so every text was tokenized otherwise
const TOKENIZER_REGRESSIONS: Record<string, { input: JsonMutation[]; outcome: string }> = {
  'a Replace normalizer whose pattern is {} (was ok: the space→▁ replacement skipped)': {
    input: [{ kind: 'set-path', keys: ['normalizer', 'normalizers', '1', 'pattern'], value: {} }],
    outcome: 'tokenizer-invalid',
  },
  'a Split pre-tokenizer whose pattern is {} (was ok: every text encoded to nothing)': {
    input: [{ kind: 'set-key', key: 'pre_tokenizer', value: { type: 'Split', pattern: {}, behavior: 'Isolated', invert: false } }],
    outcome: 'tokenizer-invalid',
  },
};

describe('fuzz regressions: tokenizer.json', () => {
  for (const [name, { input, outcome }] of Object.entries(TOKENIZER_REGRESSIONS)) {
    test(name, async () => expect(await runOnce(tokenizerJsonTarget, input)).toBe(outcome));
  }
});
