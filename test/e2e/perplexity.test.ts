// quantforge eval reproduces the fp32 reference perplexities of ../shared/models (within 0.2%).

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { expect, test } from 'vitest';
import { REPO, SHARED_MODELS, describeShared, sharedData, sharedModel } from './shared.js';

const run = promisify(execFile);

describeShared('quantforge eval on the shared models', () => {
  for (const m of SHARED_MODELS) {
    test(`${m.name} on ${m.eval} reproduces the reference perplexity ${m.ppl}`, async () => {
      const { stdout } = await run('node', [`${REPO}/bin/quantforge.js`, 'eval', '--model', sharedModel(m.name), '--dataset', sharedData(m.eval), '--seq-len', '256', '--json', '--device', 'cpu'], {
        maxBuffer: 1 << 24,
      });
      const r = JSON.parse(stdout) as { perplexity: number; windows: number; seq_len: number; tokens: number };
      expect(r.seq_len).toBe(256);
      expect(Math.abs(r.perplexity - m.ppl) / m.ppl).toBeLessThan(0.002);
    });
  }
});
