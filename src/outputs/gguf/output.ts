// Output `gguf`: one GGUF file, <path>/model.gguf, for llama.cpp, Ollama and LM Studio, packed from the codes
// and stored block qparams the methods chose (GGUF_* schemes). quantforge evaluates the file itself (its
// tensors dequantized as llama.cpp does) beside the fake-quantized model, and `eval` / `generate` open such a
// directory, or a .gguf file given directly.

import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { openWeights } from '../../graphs/open.js';
import { GgufSource } from '../../model/gguf-source.js';
import type { OutputDef, OutputOptions } from '../output-def.js';
import { evaluateGgufStep, type EvaluateGgufParams } from './evaluate-step.js';
import { exportGgufStep, GGUF_FILE, type ExportGgufParams } from './export-step.js';

export interface GgufOutput extends OutputOptions {
  readonly format: 'gguf';
  /** unquantized 2-D tensors: auto keeps the model's dtype */
  readonly type: 'auto' | 'f32' | 'f16' | 'bf16';
}

const fileOf = (path: string): string => (path.endsWith('.gguf') ? path : join(path, GGUF_FILE));

export const ggufOutput: OutputDef<GgufOutput, ExportGgufParams, EvaluateGgufParams> = {
  format: 'gguf',
  properties: { format: 'always', path: 'always', type: 'always' },
  write: { step: exportGgufStep, params: (o) => ({ format: 'gguf', type: o.type }) },
  evaluate: { role: 'gguf', label: 'GGUF file', step: evaluateGgufStep, input: 'gguf', params: (batchSize) => ({ batch_size: batchSize }) },
  open: {
    detect: (path) => {
      try {
        return existsSync(fileOf(path)) && statSync(fileOf(path)).isFile();
      } catch {
        return false;
      }
    },
    async open(rt, path) {
      const source = await GgufSource.open(fileOf(path));
      return { ...openWeights(rt, 'gguf', source), dir: path.endsWith('.gguf') ? dirname(path) : path };
    },
  },
};
