// Step `tokenize`: encode a dataset once with the model's tokenizer and cut it into windows (DESIGN.md §6):
// calibration keeps `samples` windows (first, or seeded random with shuffle); evaluation keeps the first
// `max_windows` (all when null). When only the first windows are kept, the text is read and encoded only until
// they are full (model/segment-encoder.ts says why the ids equal encoding the whole file and cutting).

import { join } from 'node:path';
import { writeSafetensors } from '../formats/safetensors.js';
import { loadTokenizer } from '../model/tokenizer.js';
import { chooseCalibration, cutWindows, datasetPieces } from '../model/windows.js';
import { requireModel, type StepImpl } from './types.js';
import { ReasonedError } from '../diag/failure.js';

export const IDS_FILE = 'ids.safetensors';

export interface TokenizeParams {
  /** also the role of the dataset file (its name in the key and the lock file) */
  role: 'calibration' | 'evaluation';
  seq_len: number;
  text_field: string;
  samples?: number;
  shuffle?: boolean;
  seed?: number;
  max_windows?: number | null;
  /** the dataset is this file inside the model directory (`model:calib.txt`) */
  model_file?: string;
}

export const tokenizeStep: StepImpl<'tokenize', TokenizeParams> = {
  kind: 'tokenize',
  async run(ctx) {
    const p = ctx.params;
    const dataset = p.model_file !== undefined ? join(requireModel(ctx), p.model_file) : ctx.files[p.role];
    if (!dataset) throw new Error(`step ${ctx.id}: no dataset file`);
    ctx.progress(0, 1, 'encoding');
    const calibration = p.role === 'calibration';
    // windows needed from the start of the stream; a shuffled choice draws from all of them
    const needed = calibration ? (p.shuffle ? undefined : (p.samples ?? 1)) : (p.max_windows ?? undefined);
    const { ids, complete } = loadTokenizer(requireModel(ctx)).encodePrefix(datasetPieces(dataset, p.text_field), needed === undefined ? Infinity : needed * p.seq_len);
    const all = cutWindows(ids, p.seq_len, calibration ? undefined : (p.max_windows ?? undefined));
    const windows = calibration ? chooseCalibration(all, { samples: p.samples ?? 1, shuffle: p.shuffle ?? false, seed: p.seed ?? 0 }) : all;
    if (windows.dims[0] === 0) throw new ReasonedError('dataset-too-short', `${dataset}: ${ids.length} tokens make no window of ${p.seq_len} tokens`);
    await writeSafetensors(join(ctx.outDir, IDS_FILE), { ids: windows });
    ctx.progress(1, 1);
    // tokens: how many were encoded (the whole file when complete)
    return { tokens: ids.length, complete, windows: windows.dims[0] as number, seq_len: p.seq_len };
  },
};
