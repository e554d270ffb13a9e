// AutoRound W4A16 (200 iterations, the mission's parameters) on every shared model: perplexity below rtn W4A16
// and no worse than GPTQ W4A16, and every block's loss falls from its iteration-0 value.

import { expect, test } from 'vitest';
import { sharedRecipe } from './recipes.js';
import { perplexities, runRecipe } from './run-recipe.js';
import { describeShared, SHARED_MODELS } from './shared.js';

const stage = (kind: string, extra = ''): string => `  - { kind: ${kind}, scheme: W4A16, targets: [Linear], ignore: [lm_head]${extra} }`;

describeShared('autoround on the shared models', () => {
  for (const m of SHARED_MODELS) {
    test(`${m.name}: AutoRound W4A16 (200 iters) beats rtn, matches or beats GPTQ, loss falls in every block`, async () => {
      // 32 calibration windows of 128 tokens for both calibrated methods: AutoRound's 200 iterations per block
      // cost a forward and backward pass over batch_size windows each
      const calib = { samples: 32, seqLen: 128 };
      const rtn = perplexities(await runRecipe(sharedRecipe(m, stage('rtn')).path));
      const gptq = perplexities(await runRecipe(sharedRecipe(m, stage('gptq'), calib).path));
      const run = await runRecipe(sharedRecipe(m, stage('autoround', ', iters: 200'), calib).path);
      const ar = perplexities(run);
      console.log(`${m.name} W4A16: fp ${ar.fp.toFixed(4)} rtn ${rtn.quantized.toFixed(4)} gptq ${gptq.quantized.toFixed(4)} autoround ${ar.quantized.toFixed(4)}`);
      expect(ar.quantized).toBeLessThan(rtn.quantized);
      expect(ar.quantized).toBeLessThanOrEqual(gptq.quantized);
      let blocks = 0;
      for (const [id, r] of run.results) {
        if (!id.startsWith('stage1.autoround/layer.')) continue;
        expect(r['best_loss'] as number, id).toBeLessThan(r['loss_iter0'] as number);
        blocks++;
      }
      expect(blocks).toBeGreaterThan(0);
    });
  }
});
