// GPTQ on every shared model: lower perplexity than round-to-nearest at W4A16, lower output error on every
// Linear, and the mission's Simple PTQ (W8A8, dampening 0) finishes without NaN within 2% of rtn W8A8; both
// within their anchor to fp (test/e2e/anchors.ts).

import { expect, test } from 'vitest';
import { expectAnchored } from './anchors.js';
import { sharedRecipe } from './recipes.js';
import { perplexities, runRecipe } from './run-recipe.js';
import { describeShared, SHARED_MODELS } from './shared.js';

const stage = (kind: string, scheme: string, extra = ''): string => `  - { kind: ${kind}, scheme: ${scheme}, targets: [Linear], ignore: [lm_head]${extra} }`;

/**
 * quantized/fp perplexity on the windows this file scores, measured with its recipes (`npx vitest run
 * test/e2e/gptq.test.ts`, 2026-12-05, branch evidence on main 7e3fbde): the anchors' measured values.
 */
const MEASURED: Record<string, { gptq: number; simplePtq: number }> = {
  stories260K: { gptq: 1.07574, simplePtq: 1.00011 }, // fp 5.2678, gptq 5.6668, simple-ptq 5.2684
  'babyllama-char105': { gptq: 1.03009, simplePtq: 1.00102 }, // fp 2.4494, gptq 2.5231, simple-ptq 2.4519
  'wiki-llama-8m': { gptq: 1.01949, simplePtq: 1.00131 }, // fp 59.8491, gptq 61.0156, simple-ptq 59.9275
};

describeShared('gptq on the shared models', () => {
  for (const m of SHARED_MODELS) {
    test(`${m.name}: GPTQ W4A16 beats rtn W4A16 in perplexity and in every Linear's output error`, async () => {
      const rtn = perplexities(await runRecipe(sharedRecipe(m, stage('rtn', 'W4A16')).path));
      const run = await runRecipe(sharedRecipe(m, stage('gptq', 'W4A16')).path);
      const gptq = perplexities(run);
      console.log(`${m.name} W4A16: fp ${gptq.fp.toFixed(4)} rtn ${rtn.quantized.toFixed(4)} gptq ${gptq.quantized.toFixed(4)}`);
      expect(gptq.quantized).toBeLessThan(rtn.quantized);
      expectAnchored(`${m.name} GPTQ W4A16`, gptq, MEASURED[m.name]!.gptq);
      let modules = 0;
      for (const [id, r] of run.results) {
        if (!id.startsWith('stage1.gptq/layer.')) continue;
        for (const [name, e] of Object.entries(r['modules'] as Record<string, { output_error: number; rtn_output_error: number }>)) {
          expect(e.output_error, `${id} ${name}`).toBeLessThan(e.rtn_output_error);
          modules++;
        }
      }
      expect(modules).toBeGreaterThan(0);
    });

    test(`${m.name}: Simple PTQ (GPTQ W8A8, dampening 0) is finite and within 2% of rtn W8A8`, async () => {
      const rtn = perplexities(await runRecipe(sharedRecipe(m, stage('rtn', 'W8A8')).path));
      const run = await runRecipe(sharedRecipe(m, stage('gptq', 'W8A8', ', dampening_frac: 0.0')).path);
      const simple = perplexities(run);
      console.log(`${m.name} W8A8: fp ${simple.fp.toFixed(4)} rtn ${rtn.quantized.toFixed(4)} simple-ptq ${simple.quantized.toFixed(4)}`);
      expect(Number.isFinite(simple.quantized)).toBe(true);
      expectAnchored(`${m.name} Simple PTQ W8A8`, simple, MEASURED[m.name]!.simplePtq);
      expect(Math.abs(simple.quantized - rtn.quantized) / rtn.quantized).toBeLessThan(0.02);
    });
  }
});
