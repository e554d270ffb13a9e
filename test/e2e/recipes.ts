// Recipes over the shared models, written to a temp directory (absolute paths) for e2e tests.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sharedData, sharedModel, SHARED_MODELS } from './shared.js';

export type SharedModel = (typeof SHARED_MODELS)[number];

export interface RecipeOptions {
  outputs?: boolean;
  samples?: number;
  seqLen?: number;
  /** measure KL(fp ‖ quantized) too (a second forward pass); off unless a test reads it */
  kl?: boolean;
  /** no evaluate block (transform-only runs) */
  evaluate?: boolean;
  /** evaluation windows (default: the model's `evalWindows`) */
  evalWindows?: number;
}

export function sharedRecipe(m: SharedModel, stages: string, options: RecipeOptions = {}): { path: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), `qf-e2e-${m.name}-`));
  const outputs = options.outputs
    ? `outputs:\n  - { format: compressed-tensors, path: ${join(dir, 'out-ct')} }\n  - { format: onnx, path: ${join(dir, 'out-onnx')} }\n`
    : '';
  const text = `quantforge: 1
model: ${sharedModel(m.name)}
calibration: { dataset: ${sharedData(m.calib)}, samples: ${options.samples ?? 64}, seq_len: ${options.seqLen ?? 256} }
stages:
${stages}
${options.evaluate === false ? '' : `evaluate:\n  perplexity: { dataset: ${sharedData(m.eval)}, seq_len: 256, max_windows: ${options.evalWindows ?? m.evalWindows} }\n  kl: ${options.kl ?? false}\n`}${outputs}`;
  const path = join(dir, 'recipe.yaml');
  writeFileSync(path, text);
  return { path, dir };
}
