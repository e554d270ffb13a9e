// Output `gguf`: one GGUF file, <path>/model.gguf, for llama.cpp, Ollama and LM Studio, packed from the codes
// and stored block qparams the methods chose (GGUF_* schemes). quantforge evaluates the file itself (its
// tensors dequantized as llama.cpp does) beside the fake-quantized model, and `eval` / `generate` open such a
// directory, or a .gguf file given directly.

import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { openWeights } from '../../graphs/open.js';
import { GgufSource } from '../../model/gguf-source.js';
import type { OutputDef, OutputOptions, PlannedModule } from '../output-def.js';
import { GGUF_TYPES, ggufTypeOf } from '../../quant/gguf-scheme.js';
import { evaluateGgufStep, type EvaluateGgufParams } from './evaluate-step.js';
import { exportGgufStep, GGUF_FILE, type ExportGgufParams } from './export-step.js';

export interface GgufOutput extends OutputOptions {
  readonly format: 'gguf';
  /** unquantized 2-D tensors: auto keeps the model's dtype */
  readonly type: 'auto' | 'f32' | 'f16' | 'bf16';
}

const fileOf = (path: string): string => (path.endsWith('.gguf') ? path : join(path, GGUF_FILE));

/** GGUF schemes only: other schemes' codes and scales are not ggml blocks (requantizing them is not built) */
function supports(m: PlannedModule): string | undefined {
  if (ggufTypeOf(m.quant.weights) !== undefined) return undefined;
  const w = m.quant.weights;
  const what = w.type === 'float' ? `${w.num_bits}-bit float` : `${w.num_bits}-bit int ${w.strategy}${w.group_size ? ` ${w.group_size}` : ''}`;
  return `the gguf output writes GGUF block schemes (${GGUF_TYPES.map((t) => `GGUF_${t}`).join(', ')}), whose codes and float16 block scales are the ones llama.cpp reads; ${what} weights would need requantizing, which quantforge does not do: quantize with a GGUF_* scheme`;
}

export const ggufOutput: OutputDef<GgufOutput, ExportGgufParams, EvaluateGgufParams> = {
  format: 'gguf',
  properties: { format: 'always', path: 'always', type: 'always' },
  supports,
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
