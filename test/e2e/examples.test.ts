// The shipped examples on the synthetic example model (no ../shared needed): the quick start is a no-op the
// second time and its ONNX export loads in @huggingface/transformers with the same greedy tokens; the sweeps
// share every step their variants have in common; SmoothQuant helps W8A8 where there are outlier channels.

import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { greedyBoth } from './interop.js';
import { perplexities, runRecipe } from './run-recipe.js';
import { REPO } from './shared.js';

function example(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `qf-example-${name}-`));
  cpSync(join(REPO, 'examples', name), dir, { recursive: true });
  return join(dir, 'recipe.yaml');
}

describe('examples on the synthetic model', () => {
  test('the quick start runs, then reruns as a no-op; its ONNX export generates the same tokens in transformers.js', async () => {
    const recipe = example('quickstart');
    const first = await runRecipe(recipe);
    const ppl = perplexities(first);
    expect(ppl.quantized).toBeGreaterThan(ppl.fp);
    expect(Math.abs(ppl.onnx! - ppl.quantized) / ppl.quantized).toBeLessThan(0.005);
    const second = await runRecipe(recipe);
    expect(second.summary.ran).toBe(0);
    expect(second.summary.cached).toBe(first.summary.ran + first.summary.cached);

    const { ours, transformers } = await greedyBoth(join(recipe, '..', 'out', 'quickstart-w4a16-onnx'), 'the cat saw', 16);
    expect(transformers).toEqual(ours);
  });

  test('a 5-value smoothing sweep runs each capture once, and SmoothQuant(0.8)+W8A8 beats rtn W8A8', async () => {
    const recipe = example('sweep-smoothing');
    const { summary } = await runRecipe(recipe);
    const layers = 4;
    expect(summary.steps['capture']).toEqual({ ran: layers, cached: 0 });
    expect(summary.steps['smoothquant']!.ran).toBe(5 * layers);
    expect(summary.steps['evaluate']!.ran + summary.steps['evaluate']!.cached).toBe(1 + 5);
    expect(summary.steps['evaluate']!.ran).toBeGreaterThanOrEqual(5);
    const variants = (summary.metrics as { variants: { label: string; perplexity: { quantized: number } }[] }).variants;
    expect(variants).toHaveLength(5);
    const sq08 = variants.find((v) => v.label === 'smoothing_strength=0.8')!.perplexity.quantized;
    const rtnOnly = perplexities(await runRecipe(rtnRecipe()));
    console.log(`example model W8A8: rtn ${rtnOnly.quantized.toFixed(4)}, smoothquant 0.8 + rtn ${sq08.toFixed(4)}; variants ${variants.map((v) => `${v.label} ${v.perplexity.quantized.toFixed(3)}`).join(', ')}`);
    expect(sq08).toBeLessThanOrEqual(rtnOnly.quantized);
  });

  test('an AutoRound iters sweep shares the calibration data, the full-precision chain and the FP evaluation', async () => {
    const { summary } = await runRecipe(example('sweep-iters'), ['stages[0].iters=0,5,20']);
    const layers = 4;
    expect(summary.steps['autoround']!.ran).toBe(3 * layers);
    expect(summary.steps['tokenize']!.ran + summary.steps['tokenize']!.cached).toBe(2);
    expect(summary.steps['embed']!.ran + summary.steps['embed']!.cached).toBe(1);
    expect(summary.steps['propagate']!.ran + summary.steps['propagate']!.cached).toBe(layers - 1);
    expect(summary.steps['evaluate']!.ran + summary.steps['evaluate']!.cached).toBe(1 + 3);
  });
});

/** the smoothing example without its smoothquant stage and sweep: plain rtn W8A8 on the same model and data */
function rtnRecipe(): string {
  const path = example('sweep-smoothing');
  const text = readFileSync(path, 'utf8').replace(/  - kind: smoothquant\n    smoothing_strength: 0.8\n/, '').replace(/sweep:\n.*\n/, '');
  const out = join(path, '..', 'rtn.yaml');
  writeFileSync(out, text);
  return out;
}
