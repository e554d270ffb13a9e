// Datasets as steps read them (calibration and evaluation alike): a file of its own, whose digest goes into the
// tokenize step's key, or a file inside the model directory; and seq_len fitted to the model's context.

import { join } from 'node:path';
import { errorAt, type Diagnostic } from '../diag/diagnostic.js';
import type { DatasetRef, JsonPath, LoadedRecipe } from '../recipe/types.js';
import type { ResolvedModel } from './model.js';

/** what a dataset is for: the tokenize step's `role`, the name of its file in keys and lock files */
export type DatasetRole = 'calibration' | 'evaluation';

/**
 * a dataset as step files/params: a file of its own, or a file inside the model directory; the file's role is
 * the dataset's (`calibration`, `evaluation`), so the lock file records each dataset under its own name
 */
export function datasetSource(ref: DatasetRef, model: ResolvedModel, role: DatasetRole): { files: Record<string, string>; params: { model_file?: string } } {
  if (ref.source === 'file') return { files: { [role]: ref.path }, params: {} };
  if (model.ref.kind === 'dir') return { files: { [role]: join(model.ref.dir, ref.file) }, params: {} };
  return { files: {}, params: { model_file: ref.file } };
}

/** seq_len written in the recipe must fit the model; a default is capped to the model's context */
export function cappedSeqLen(loaded: LoadedRecipe, path: JsonPath, value: number, model: ResolvedModel, diagnostics: Diagnostic[]): number {
  const max = model.config.maxPositions;
  if (value <= max) return value;
  if (loaded.doc.hasIn(path)) {
    diagnostics.push(errorAt('seq-len-too-long', `seq_len ${value} exceeds the model's max_position_embeddings ${max}`, loaded.locate(path)));
  }
  return max;
}
