// Recipes over the shared models, written to a temp directory (absolute paths) for e2e tests.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sharedData, sharedModel, SHARED_MODELS } from './shared.js';

export type SharedModel = (typeof SHARED_MODELS)[number];


export function sharedRecipe(m: SharedModel, stages: string, options: { outputs?: boolean; samples?: number } = {}): { path: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), `qf-e2e-${m.name}-`));
  const outputs = options.outputs
    ? `outputs:\n  - { format: compressed-tensors, path: ${join(dir, 'out-ct')} }\n  - { format: onnx, path: ${join(dir, 'out-onnx')} }\n`
    : '';
  const text = `quantforge: 1
model: ${sharedModel(m.name)}
calibration: { dataset: ${sharedData(m.calib)}, samples: ${options.samples ?? 64}, seq_len: 256 }
stages:
${stages}
evaluate:
  perplexity: { dataset: ${sharedData(m.eval)}, seq_len: 256, max_windows: ${m.evalWindows} }
${outputs}`;
  const path = join(dir, 'recipe.yaml');
  writeFileSync(path, text);
  return { path, dir };
}
