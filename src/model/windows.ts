// Datasets and windows (DESIGN.md §6): a plain-text file is read whole, a JSONL file joins its documents'
// `text_field` with blank lines; the text is encoded once and cut into consecutive non-overlapping windows of
// seq_len tokens, the ragged remainder dropped. Calibration takes the first `samples` windows, or a seeded
// random choice of them with `shuffle`.

import { readFileSync } from 'node:fs';
import { InputError, ReasonedError, type DatasetReason } from '../diag/failure.js';
import { causeText } from '../diag/quote.js';
import { seededRandom } from '../random.js';
import { tensor, type Tensor } from '../tensor.js';

/** a calibration or evaluation file that cannot be read or is not the JSONL it claims to be */
export class DatasetError extends InputError<Extract<DatasetReason, 'file-not-found' | 'dataset-unreadable' | 'dataset-invalid'>> {}

export function readDatasetText(path: string, textField = 'text'): string {
  let raw: string;
  try {
    raw = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new DatasetError('file-not-found', `${path}: no such dataset file`, { file: path });
    throw new DatasetError('dataset-unreadable', `${path}: cannot read the dataset (${code ?? causeText(e)})`, { file: path });
  }
  if (!/\.jsonl$/i.test(path)) return raw;
  const docs: string[] = [];
  raw.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch {
      throw new DatasetError('dataset-invalid', `${path}:${i + 1}: not a JSON object`, { file: path, field: `line ${i + 1}` });
    }
    const text = (obj as Record<string, unknown> | null)?.[textField];
    if (typeof text !== 'string') throw new DatasetError('dataset-invalid', `${path}:${i + 1}: field "${textField}" is missing or not a string`, { file: path, field: textField });
    docs.push(text);
  });
  return docs.join('\n\n');
}

/** consecutive windows `[floor(n / seqLen), seqLen]` of an id stream */
export function cutWindows(ids: readonly number[], seqLen: number, maxWindows?: number): Tensor<'int32'> {
  let n = Math.floor(ids.length / seqLen);
  if (maxWindows !== undefined) n = Math.min(n, maxWindows);
  return tensor('int32', [n, seqLen], Int32Array.from(ids.slice(0, n * seqLen)));
}

export interface CalibrationChoice {
  samples: number;
  shuffle: boolean;
  seed: number;
}

/** the calibration windows: the first `samples`, or `samples` distinct windows drawn with `seed` */
export function chooseCalibration(all: Tensor<'int32'>, choice: CalibrationChoice): Tensor<'int32'> {
  const [n, T] = all.dims as [number, number];
  if (n < choice.samples) {
    throw new ReasonedError('dataset-too-short', `calibration set has only ${n} windows of ${T} tokens; ${choice.samples} samples requested`);
  }
  const order = Array.from({ length: n }, (_, i) => i);
  if (choice.shuffle) {
    const rand = seededRandom(choice.seed);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [order[i], order[j]] = [order[j] as number, order[i] as number];
    }
  }
  const out = new Int32Array(choice.samples * T);
  for (let s = 0; s < choice.samples; s++) {
    const w = order[s] as number;
    out.set(all.data.subarray(w * T, (w + 1) * T), s * T);
  }
  return tensor('int32', [choice.samples, T], out);
}
