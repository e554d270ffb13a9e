// Simple PTQ (rtn) on every shared model: the saved compressed-tensors checkpoint reproduces the fake-quant
// perplexity, the ONNX export is within 0.5% of it, and quantization costs perplexity within the anchor
// measured for it (test/e2e/anchors.ts); int4 costs some perplexity. These are format
// checks, not method rankings, so 20 evaluation windows are enough on every model (the whole evaluation
// files are scored against the independent reference by bench/accuracy.ts).

import { join } from 'node:path';
import { expect, test } from 'vitest';
import { openModel } from '../../src/outputs/open.js';
import { readIds } from '../../src/steps/activations.js';
import { Runtime } from '../../src/ort/session.js';
import { expectAnchored } from './anchors.js';
import { greedyBoth } from './interop.js';
import { sharedRecipe } from './recipes.js';
import { perplexities, runRecipe } from './run-recipe.js';
import { describeShared, SHARED_MODELS } from './shared.js';

/**
 * quantized/fp perplexity on these 20 windows, measured with this file's recipes (`npx vitest run
 * test/e2e/rtn.test.ts`, 2026-12-05, branch evidence on main 7e3fbde): the anchors' measured values.
 */
const MEASURED: Record<string, Record<string, number>> = {
  'stories260K': { W4A16: 1.13507, W4A16_ASYM: 1.10992, W8A8: 1.00255 }, // fp 5.4084
  'babyllama-char105': { W4A16: 1.07057, W4A16_ASYM: 1.0515, W8A8: 1.00179 }, // fp 2.5125
  'wiki-llama-8m': { W4A16: 1.01211, W4A16_ASYM: 1.01628, W8A8: 0.9989 }, // fp 79.1529
};

/** the shared models whose exports transformers.js runs (the smallest and the largest) */
const TRANSFORMERS_JS = ['stories260K', 'wiki-llama-8m'];

describeShared('rtn on the shared models', () => {
  for (const m of SHARED_MODELS) {
    for (const scheme of ['W4A16', 'W4A16_ASYM', 'W8A8']) {
      test(`${m.name} ${scheme}: checkpoint = fake-quant (0.01%), ONNX within 0.5%, anchored to fp`, async () => {
        const { path, dir } = sharedRecipe(m, `  - { kind: rtn, scheme: ${scheme}, targets: [Linear], ignore: [lm_head] }`, { outputs: true, evalWindows: 20 });
        const run = await runRecipe(path);
        const ppl = perplexities(run);
        // W8A8 costs ~0.1% on the whole files: on 20 windows it can land either side of fp (wiki-llama-8m: below)
        if (scheme !== 'W8A8') expect(ppl.quantized).toBeGreaterThan(ppl.fp);
        expectAnchored(`${m.name} rtn ${scheme}`, ppl, MEASURED[m.name]![scheme]!);
        expect(Math.abs(ppl.onnx! - ppl.quantized) / ppl.quantized).toBeLessThan(0.005);
        const rt = new Runtime({ device: 'cpu' });
        const model = await openModel(rt, join(dir, 'out-ct'));
        expect(model.format).toBe('compressed-tensors');
        const reloaded = await model.perplexity(await readIds(run.artifacts.get('tokenize/evaluation')!));
        await model.close();
        expect(Math.abs(reloaded.perplexity - ppl.quantized) / ppl.quantized).toBeLessThan(1e-4);
        if (TRANSFORMERS_JS.includes(m.name)) {
          // the int4 (zero points too) and int8 ONNX exports load in transformers.js and generate the same tokens,
          // from the prompt ids of transformers.js's own tokenizer (which ours must match)
          const g = await greedyBoth(join(dir, 'out-onnx'), 'The history of the Roman Empire', 24);
          expect(g.ourIds).toEqual(g.ids);
          expect(g.transformers).toEqual(g.ours);
        }
        console.log(`${m.name} rtn ${scheme}: fp ${ppl.fp.toFixed(4)} quantized ${ppl.quantized.toFixed(4)} onnx ${ppl.onnx!.toFixed(4)} checkpoint ${reloaded.perplexity.toFixed(4)}`);
      });
    }
  }
});
