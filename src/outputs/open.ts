// Open any model directory quantforge can evaluate: the first output format whose opener recognises it
// (compressed-tensors, ONNX ...), else a plain HuggingFace checkpoint.

import { existsSync } from 'node:fs';
import { openWeights, type OpenedModel } from '../graphs/open.js';
import { HfSource } from '../model/source.js';
import type { Runtime } from '../ort/session.js';
import { outputDefs } from './registry.js';
import { InputError } from '../diag/failure.js';

export async function openModel(rt: Runtime, dir: string): Promise<OpenedModel> {
  if (!existsSync(dir)) throw new InputError('model-not-found', `${dir}: no such model directory`, { file: dir });
  for (const def of Object.values(outputDefs)) if (def.open?.detect(dir)) return def.open.open(rt, dir);
  return openWeights(rt, 'hf', await HfSource.open(dir));
}
