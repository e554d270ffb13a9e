// Fuzzing the files of a model directory (targets/model-dir.ts): config.json, tokenizer.json and the
// checkpoint index with its shards, each case ending in ok or a named error naming the file.

import { describe, expect, test } from 'vitest';
import { formatOutcomes, runFuzz, runOnce } from './harness.js';
import { checkpointIndexTarget, configJsonTarget, tokenizerJsonTarget } from './targets/model-dir.js';

describe('fuzz: model directory files', () => {
  for (const target of [configJsonTarget, tokenizerJsonTarget, checkpointIndexTarget]) {
    test(`${target.name}: every case ends in ok or a named error naming the file`, async () => {
      const report = await runFuzz(target as typeof configJsonTarget);
      console.log(`${report.target}: ${report.runs} cases in ${report.seconds.toFixed(1)} s: ${formatOutcomes(report.outcomes)}`);
      expect(report.outcomes.get('ok') ?? 0).toBeGreaterThan(0);
    });
  }
});

void runOnce;
