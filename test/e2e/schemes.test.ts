// The FP8, NVFP4, MXFP4 and W4A8 schemes end to end on stories260K: each quantizes with rtn (FP8 and NVFP4
// also with GPTQ), writes compressed-tensors, and the checkpoint read back evaluates to the fake-quantized
// model's perplexity exactly (the reader dequantizes what the writer packed; the model is float32, so no
// scale is rounded on the way). Small windows keep the whole file to a few seconds per scheme.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { openModel } from '../../src/outputs/open.js';
import { readIds } from '../../src/steps/activations.js';
import { Runtime } from '../../src/ort/session.js';
import { perplexities, runRecipe, type RecipeRun } from './run-recipe.js';
import { describeShared, sharedData, sharedModel } from './shared.js';

function recipe(stage: string, onnx = false): { path: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'qf-e2e-schemes-'));
  const text = `quantforge: 1
model: ${sharedModel('stories260K')}
calibration: { dataset: ${sharedData('tinystories-calib.txt')}, samples: 8, seq_len: 128 }
stages:
  - ${stage}
evaluate:
  perplexity: { dataset: ${sharedData('tinystories-eval.txt')}, seq_len: 128, max_windows: 12 }
  kl: false
outputs:
  - { format: compressed-tensors, path: ${join(dir, 'out-ct')} }
${onnx ? `  - { format: onnx, path: ${join(dir, 'out-onnx')} }\n` : ''}`;
  const path = join(dir, 'recipe.yaml');
  writeFileSync(path, text);
  return { path, dir };
}

/** the compressed-tensors checkpoint's perplexity on the run's evaluation windows */
async function reloaded(run: RecipeRun, dir: string): Promise<number> {
  const rt = new Runtime({ device: 'cpu' });
  const model = await openModel(rt, join(dir, 'out-ct'));
  expect(model.format).toBe('compressed-tensors');
  try {
    return (await model.perplexity(await readIds(run.artifacts.get('tokenize/evaluation')!))).perplexity;
  } finally {
    await model.close();
    await rt.close();
  }
}

describeShared('the float and W4A8 schemes on stories260K', () => {
  for (const scheme of ['W4A8', 'FP8', 'FP8_DYNAMIC', 'FP8_BLOCK', 'NVFP4A16', 'NVFP4', 'MXFP4A16', 'MXFP4']) {
    test(`rtn ${scheme}: the compressed-tensors checkpoint evaluates to the fake-quant perplexity`, async () => {
      const onnx = scheme === 'W4A8';
      const { path, dir } = recipe(`{ kind: rtn, scheme: ${scheme}, targets: [Linear], ignore: [lm_head] }`, onnx);
      const run = await runRecipe(path);
      const ppl = perplexities(run);
      const checkpoint = await reloaded(run, dir);
      console.log(`stories260K rtn ${scheme}: fp ${ppl.fp.toFixed(4)} fake-quant ${ppl.quantized.toFixed(4)} checkpoint ${checkpoint.toFixed(4)}${onnx ? ` onnx ${ppl.onnx!.toFixed(4)}` : ''}`);
      expect(checkpoint).toBe(ppl.quantized);
      expect(ppl.quantized).not.toBe(ppl.fp);
      // 4-bit schemes cost perplexity; W4A8's ONNX export (per-token int8 inputs into MatMulNBits) stays close
      if (scheme.includes('4')) expect(ppl.quantized).toBeGreaterThan(ppl.fp);
      if (onnx) expect(Math.abs(ppl.onnx! - ppl.quantized) / ppl.quantized).toBeLessThan(0.01);
    });
  }

  for (const scheme of ['FP8', 'NVFP4']) {
    test(`gptq ${scheme}: beats round-to-nearest on its objective, and the checkpoint evaluates to the fake-quant perplexity`, async () => {
      const { path, dir } = recipe(`{ kind: gptq, scheme: ${scheme}, targets: [Linear], ignore: [lm_head] }`);
      const run = await runRecipe(path);
      const ppl = perplexities(run);
      let gptq = 0;
      let rtn = 0;
      for (let l = 0; l < 5; l++) {
        const modules = run.results.get(`stage1.gptq/layer.${l}`)!['modules'] as Record<string, { output_error: number; rtn_output_error: number }>;
        for (const m of Object.values(modules)) {
          gptq += m.output_error;
          rtn += m.rtn_output_error;
        }
      }
      const checkpoint = await reloaded(run, dir);
      console.log(`stories260K gptq ${scheme}: fp ${ppl.fp.toFixed(4)} fake-quant ${ppl.quantized.toFixed(4)} checkpoint ${checkpoint.toFixed(4)} output error gptq ${gptq.toExponential(3)} rtn ${rtn.toExponential(3)}`);
      expect(gptq).toBeLessThan(rtn);
      expect(checkpoint).toBe(ppl.quantized);
    });
  }
});
