// quantforge eval reproduces the fp32 reference perplexity of ../shared/models on a whole evaluation file
// (within 0.2%). The CI suite checks the smallest model (stories260K, 712 windows); the same check on the
// other two (babyllama-char105: 1437 windows, wiki-llama-8m: 1540 windows of an 8M-parameter model) costs
// minutes and runs in `bench/accuracy.ts`, which checks every model's fp32 perplexity this way.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { expect, test } from 'vitest';
import { REPO, SHARED_MODELS, describeShared, sharedData, sharedModel } from './shared.js';

const run = promisify(execFile);

describeShared('quantforge eval on the shared models', () => {
  for (const m of SHARED_MODELS.filter((s) => s.name === 'stories260K')) {
    test(`${m.name} on ${m.eval} reproduces the reference perplexity ${m.ppl}`, async () => {
      const { stdout } = await run('node', [`${REPO}/bin/quantforge.js`, 'eval', '--model', sharedModel(m.name), '--dataset', sharedData(m.eval), '--seq-len', '256', '--json', '--device', 'cpu'], {
        maxBuffer: 1 << 24,
      });
      const r = JSON.parse(stdout) as { perplexity: number; windows: number; seq_len: number; tokens: number };
      expect(r.seq_len).toBe(256);
      // every full window of the file, as the reference scored (../shared/reference/perplexity.json)
      expect(r.windows).toBe(712);
      expect(Math.abs(r.perplexity - m.ppl) / m.ppl).toBeLessThan(0.002);
    });
  }
});
