// Datasets and windows (DESIGN.md §6): a plain-text file is read whole, a JSONL file joins its documents'
// `text_field` with blank lines; the text is encoded once and cut into consecutive non-overlapping windows of
// seq_len tokens, the ragged remainder dropped. Calibration takes the first `samples` windows, or a seeded
// random choice of them with `shuffle`.

import { closeSync, openSync, readSync } from 'node:fs';
import { InputError, ReasonedError, type DatasetReason } from '../diag/failure.js';
import { causeText } from '../diag/quote.js';
import { seededRandom } from '../random.js';
import { tensor, type Tensor } from '../tensor.js';

/** a calibration or evaluation file that cannot be read or is not the JSONL it claims to be */
export class DatasetError extends InputError<Extract<DatasetReason, 'file-not-found' | 'dataset-unreadable' | 'dataset-invalid'>> {}

export function readDatasetText(path: string, textField = 'text'): string {
  return [...datasetPieces(path, textField)].join('');
}

const CHUNK_BYTES = 2 ** 16;

/** the file's text in pieces of about 64 KiB, read as they are asked for (UTF-8 sequences kept whole): a reader that needs only the beginning splits and encodes little more than it uses */
function* fileChunks(path: string): Generator<string> {
  const unreadable = (e: unknown): DatasetError => {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return new DatasetError('file-not-found', `${path}: no such dataset file`, { file: path });
    return new DatasetError('dataset-unreadable', `${path}: cannot read the dataset (${code ?? causeText(e)})`, { file: path });
  };
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw unreadable(e);
  }
  const read = (buf: Buffer): number => {
    try {
      return readSync(fd, buf);
    } catch (e) {
      throw unreadable(e);
    }
  };
  try {
    const decoder = new TextDecoder('utf-8');
    const buf = Buffer.allocUnsafe(CHUNK_BYTES);
    for (let n = read(buf); n > 0; n = read(buf)) yield decoder.decode(buf.subarray(0, n), { stream: true });
    const tail = decoder.decode();
    if (tail) yield tail;
  } finally {
    closeSync(fd);
  }
}

/**
 * The dataset's text (DESIGN.md §6) in pieces whose concatenation is the text: a plain file as it is read, a
 * JSONL file's `text_field` of each line, documents joined by a blank line. Read lazily, so a consumer that
 * needs only the beginning (calibration windows) stops reading early.
 */
export function* datasetPieces(path: string, textField = 'text'): Generator<string> {
  if (!/\.jsonl$/i.test(path)) {
    yield* fileChunks(path);
    return;
  }
  let carry = '';
  let line = 0;
  let first = true;
  const doc = (text: string): string | undefined => {
    line++;
    if (text.trim() === '') return undefined;
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch {
      throw new DatasetError('dataset-invalid', `${path}:${line}: not a JSON object`, { file: path, field: `line ${line}` });
    }
    const value = (obj as Record<string, unknown> | null)?.[textField];
    if (typeof value !== 'string') throw new DatasetError('dataset-invalid', `${path}:${line}: field "${textField}" is missing or not a string`, { file: path, field: textField });
    const out = first ? value : `\n\n${value}`;
    first = false;
    return out;
  };
  for (const chunk of fileChunks(path)) {
    const lines = (carry + chunk).split('\n');
    carry = lines.pop() as string;
    for (const l of lines) {
      const d = doc(l);
      if (d !== undefined) yield d;
    }
  }
  const d = doc(carry);
  if (d !== undefined) yield d;
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
