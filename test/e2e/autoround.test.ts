// AutoRound W4A16 (50 iterations per block, the count the independent reference used for stories260K and
// wiki-llama-8m) on every shared model: perplexity below rtn W4A16 and no worse than GPTQ W4A16, and every
// block's loss falls from its iteration-0 value, and quantized/fp stays within its anchor (test/e2e/anchors.ts).
// The full protocol runs in bench/accuracy.ts with the reference's iteration count per model (200 for
// babyllama-char105, 50 for the others).

import { expect, test } from 'vitest';
import { expectAnchored } from './anchors.js';
import { sharedRecipe } from './recipes.js';
import { perplexities, runRecipe } from './run-recipe.js';
import { describeShared, SHARED_MODELS } from './shared.js';

const stage = (kind: string, extra = ''): string => `  - { kind: ${kind}, scheme: W4A16, targets: [Linear], ignore: [lm_head]${extra} }`;

/**
 * quantized/fp perplexity on the windows this file scores, measured with its recipes (`npx vitest run
 * test/e2e/autoround.test.ts`, 2026-12-05, branch evidence on main 7e3fbde), calibration 32 × 128: the anchors' measured values.
 */
const MEASURED: Record<string, number> = {
  stories260K: 1.05515, // fp 5.2678, rtn 5.9954, gptq 5.7294, autoround 5.5583
  'babyllama-char105': 1.01707, // fp 2.4494, rtn 2.6354, gptq 2.5150, autoround 2.4912
  'wiki-llama-8m': 1.00948, // fp 59.8491, rtn 61.3836, gptq 61.2421, autoround 60.4163
};

describeShared('autoround on the shared models', () => {
  for (const m of SHARED_MODELS) {
    test(`${m.name}: AutoRound W4A16 (50 iters) beats rtn, matches or beats GPTQ, loss falls in every block`, async () => {
      // 32 calibration windows of 128 tokens for both calibrated methods: AutoRound's iterations per block
      // cost a forward and backward pass over batch_size windows each
      const calib = { samples: 32, seqLen: 128 };
      const rtn = perplexities(await runRecipe(sharedRecipe(m, stage('rtn')).path));
      const gptq = perplexities(await runRecipe(sharedRecipe(m, stage('gptq'), calib).path));
      const run = await runRecipe(sharedRecipe(m, stage('autoround', ', iters: 50'), calib).path);
      const ar = perplexities(run);
      console.log(`${m.name} W4A16: fp ${ar.fp.toFixed(4)} rtn ${rtn.quantized.toFixed(4)} gptq ${gptq.quantized.toFixed(4)} autoround ${ar.quantized.toFixed(4)}`);
      expect(ar.quantized).toBeLessThan(rtn.quantized);
      expect(ar.quantized).toBeLessThanOrEqual(gptq.quantized);
      expectAnchored(`${m.name} AutoRound W4A16`, ar, MEASURED[m.name]!);
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
