// SmoothQuant and AWQ on the shared models: the scaling transforms alone leave the logits unchanged, AWQ
// W4A16_ASYM beats rtn W4A16_ASYM, and SmoothQuant(0.8) + W8A8 is reported against rtn W8A8; both within
// their anchor to fp (test/e2e/anchors.ts).

import { expect, test } from 'vitest';
import { HfSource } from '../../src/model/source.js';
import { Runtime } from '../../src/ort/session.js';
import { readIds } from '../../src/steps/activations.js';
import { OverlaySource } from '../../src/steps/layer-state.js';
import type { StepInputDir } from '../../src/steps/types.js';
import { expectAnchored } from './anchors.js';
import { logitsOf, relativeDifference } from './logits.js';
import { sharedRecipe } from './recipes.js';
import { perplexities, runRecipe, type RecipeRun } from './run-recipe.js';
import { describeShared, SHARED_MODELS, sharedModel } from './shared.js';

const quant = (kind: string, scheme: string, extra = ''): string => `  - { kind: ${kind}, scheme: ${scheme}, targets: [Linear], ignore: [lm_head]${extra} }`;

/** logits of the model with the given stage's layer states vs the original, on 2 evaluation windows of 64 tokens */
async function transformDrift(run: RecipeRun, model: string, stagePrefix: string): Promise<number> {
  const rt = new Runtime({ device: 'cpu' });
  const base = await HfSource.open(model);
  const overlay = await HfSource.open(model);
  try {
    const states: StepInputDir[] = [];
    for (let l = 0; l < base.config.numLayers; l++) states.push({ id: '', kind: '', dir: run.artifacts.get(`${stagePrefix}/layer.${l}`)!, result: {} });
    const windows = await readIds(run.artifacts.get('tokenize/calibration')!);
    const ids = windows.data.subarray(0, 2 * 64);
    const transformed = await logitsOf(rt, new OverlaySource(overlay, states), ids, 2, 64);
    const original = await logitsOf(rt, base, ids, 2, 64);
    return relativeDifference(transformed, original);
  } finally {
    // both hold the model's FileHandle: left to the garbage collector they were the suite's DEP0137 warnings
    await overlay.close();
    await base.close();
    await rt.close();
  }
}

/**
 * quantized/fp perplexity on the windows this file scores, measured with its recipes (`npx vitest run
 * test/e2e/smoothing.test.ts`, 2026-12-05, branch evidence on main 7e3fbde): the anchors' measured values.
 */
const MEASURED: Record<string, { sq: number; awq: number }> = {
  stories260K: { sq: 1.00137, awq: 1.0885 }, // fp 5.2678, sq 5.2750, awq 5.7340
  'babyllama-char105': { sq: 1.00037, awq: 1.05246 }, // fp 2.4494, sq 2.4503, awq 2.5779
  'wiki-llama-8m': { sq: 1.00063, awq: 1.02125 }, // fp 59.8491, sq 59.8867, awq 61.1211
};

describeShared('smoothquant and awq on the shared models', () => {
  for (const m of SHARED_MODELS) {
    test(`${m.name}: the SmoothQuant transform alone changes logits by < 1e-4; SQ(0.8)+W8A8 vs rtn W8A8`, async () => {
      const rtn = perplexities(await runRecipe(sharedRecipe(m, quant('rtn', 'W8A8')).path));
      // SmoothQuant needs only per-channel activation maxima: 32 calibration windows
      const run = await runRecipe(sharedRecipe(m, `  - { kind: smoothquant, smoothing_strength: 0.8 }\n${quant('rtn', 'W8A8')}`, { samples: 32 }).path);
      const sq = perplexities(run);
      const drift = await transformDrift(run, sharedModel(m.name), 'stage1.smoothquant');
      console.log(`${m.name} W8A8: fp ${sq.fp.toFixed(4)} rtn ${rtn.quantized.toFixed(4)} smoothquant+rtn ${sq.quantized.toFixed(4)}; transform logit drift ${drift.toExponential(2)}`);
      expect(drift).toBeLessThan(1e-4);
      expect(Number.isFinite(sq.quantized)).toBe(true);
      expectAnchored(`${m.name} SmoothQuant + W8A8`, sq, MEASURED[m.name]!.sq);
    });

    test(`${m.name}: AWQ scaling alone changes logits by < 1e-4; AWQ W4A16_ASYM beats rtn W4A16_ASYM`, async () => {
      const rtn = perplexities(await runRecipe(sharedRecipe(m, quant('rtn', 'W4A16_ASYM')).path));
      // 32 calibration windows of 256 tokens: AWQ's grid search runs every candidate scale over them
      const awq = perplexities(await runRecipe(sharedRecipe(m, quant('awq', 'W4A16_ASYM', ', duo_scaling: both'), { samples: 32 }).path));
      console.log(`${m.name} W4A16_ASYM: fp ${awq.fp.toFixed(4)} rtn ${rtn.quantized.toFixed(4)} awq ${awq.quantized.toFixed(4)}`);
      expect(awq.quantized).toBeLessThan(rtn.quantized);
      expectAnchored(`${m.name} AWQ W4A16_ASYM`, awq, MEASURED[m.name]!.awq);
      // the scales fold is what is checked; a coarse grid and no evaluation keep this run short
      const foldOnly = await runRecipe(sharedRecipe(m, `  - { kind: awq, duo_scaling: true, n_grid: 4 }\n${quant('rtn', 'W4A16_ASYM')}`, { evaluate: false, samples: 32 }).path);
      expect(await transformDrift(foldOnly, sharedModel(m.name), 'stage1.awq')).toBeLessThan(1e-4);
    });
  }
});
