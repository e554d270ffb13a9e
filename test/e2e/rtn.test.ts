// Simple PTQ (rtn) on every shared model: the saved compressed-tensors checkpoint reproduces the fake-quant
// perplexity, the ONNX export is within 0.5% of it, and quantization costs perplexity. These are format
// checks, not method rankings, so 100 evaluation windows are enough on every model.

import { join } from 'node:path';
import { expect, test } from 'vitest';
import { openModel } from '../../src/outputs/open.js';
import { readIds } from '../../src/steps/activations.js';
import { Runtime } from '../../src/ort/session.js';
import { greedyBoth } from './interop.js';
import { sharedRecipe } from './recipes.js';
import { perplexities, runRecipe } from './run-recipe.js';
import { describeShared, SHARED_MODELS } from './shared.js';

describeShared('rtn on the shared models', () => {
  for (const m of SHARED_MODELS) {
    for (const scheme of ['W4A16', 'W4A16_ASYM', 'W8A8']) {
      test(`${m.name} ${scheme}: checkpoint = fake-quant (0.01%), ONNX within 0.5%, worse than fp`, async () => {
        const { path, dir } = sharedRecipe(m, `  - { kind: rtn, scheme: ${scheme}, targets: [Linear], ignore: [lm_head] }`, { outputs: true, kl: true, evalWindows: 100 });
        const run = await runRecipe(path);
        const ppl = perplexities(run);
        expect(ppl.quantized).toBeGreaterThan(ppl.fp);
        expect(Math.abs(ppl.onnx! - ppl.quantized) / ppl.quantized).toBeLessThan(0.005);
        const rt = new Runtime({ device: 'cpu' });
        const model = await openModel(rt, join(dir, 'out-ct'));
        expect(model.format).toBe('compressed-tensors');
        const reloaded = await model.perplexity(await readIds(run.artifacts.get('tokenize/evaluation')!));
        await model.close();
        expect(Math.abs(reloaded.perplexity - ppl.quantized) / ppl.quantized).toBeLessThan(1e-4);
        if (m.name === 'wiki-llama-8m' && scheme === 'W4A16') {
          // the int4 ONNX export of the largest shared model loads in transformers.js and generates the same tokens
          const { ours, transformers } = await greedyBoth(join(dir, 'out-onnx'), 'The history of the Roman Empire', 24);
          expect(transformers).toEqual(ours);
        }
        console.log(`${m.name} rtn ${scheme}: fp ${ppl.fp.toFixed(4)} quantized ${ppl.quantized.toFixed(4)} onnx ${ppl.onnx!.toFixed(4)} checkpoint ${reloaded.perplexity.toFixed(4)} kl ${ppl.kl?.toFixed(5)}`);
      });
    }
  }
});
