// Output `gguf`: one GGUF file, <path>/model.gguf, for llama.cpp, Ollama and LM Studio, packed from the codes
// and stored block qparams the methods chose (GGUF_* schemes). quantforge evaluates the file itself (its
// tensors dequantized as llama.cpp does) beside the fake-quantized model, and `eval` / `generate` open such a
// directory, or a .gguf file given directly.

import { existsSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { OutputDef, OutputOptions, PlannedModel, PlannedModule } from '../output-def.js';
import { GGUF_TYPES, ggufTypeOf, requantizeTarget } from '../../quant/gguf-scheme.js';
import { stepDef } from '../../steps/types.js';
import type { EvaluateGgufParams } from './evaluate-step.js';
import type { ExportGgufParams } from './export-step.js';
import { ggufFileOf as fileOf } from './gguf-file.js';

export interface GgufOutput extends OutputOptions {
  readonly format: 'gguf';
  /** unquantized 2-D tensors: auto keeps the model's dtype */
  readonly type: 'auto' | 'f32' | 'f16' | 'bf16';
}

const describe = (w: PlannedModule['quant']['weights']): string =>
  w.type === 'float' ? `${w.num_bits}-bit float` : `${w.num_bits}-bit int ${w.symmetric ? 'symmetric' : 'asymmetric'} ${w.strategy}${w.group_size ? ` ${w.group_size}` : ''}`;

/** GGUF schemes, and integer schemes of ≤ 8 bits requantized to a 32-weight block type (quant/gguf-requantize.ts) */
function supports(m: PlannedModule): string | undefined {
  if (ggufTypeOf(m.quant.weights) !== undefined || requantizeTarget(m.quant.weights) !== undefined) return undefined;
  return `the gguf output writes GGUF block schemes (${GGUF_TYPES.map((t) => `GGUF_${t}`).join(', ')}) and requantizes integer schemes of up to 8 bits; ${describe(m.quant.weights)} weights have no block type: quantize with a GGUF_* scheme`;
}

/** integer schemes are requantized: say to what, and what it costs (docs/gguf.md, measured) */
function warns(m: PlannedModule): string | undefined {
  if (ggufTypeOf(m.quant.weights) !== undefined) return undefined;
  const target = requantizeTarget(m.quant.weights);
  if (target === undefined) return undefined;
  const inputs = m.quant.input_activations ? `; their ${m.quant.input_activations.num_bits}-bit input quantization is not stored (llama.cpp rounds activations its own way)` : '';
  return `${describe(m.quant.weights)} weights are requantized to ${target} blocks of 32 at their own scales stored as float16 (blocks whose scale is not one source group take ggml's rounding; in_features not a multiple of 32 stay unquantized), so the file is not exactly the evaluated fake-quantized model (measured: its perplexity within 0.03 % of the fake-quantized model's on stories260K and wiki-llama-8m, docs/gguf.md "Requantizing"); quantize with GGUF_${target} to have the method optimise the stored blocks${inputs}`;
}

/** the GGUF writer writes llama.cpp's `llama` architecture keys; llama.cpp loads llama and mistral checkpoints under it */
const GGUF_MODEL_TYPES = ['llama', 'mistral'];

function supportsModel(model: PlannedModel): string | undefined {
  if (GGUF_MODEL_TYPES.includes(model.modelType)) return undefined;
  return `model_type "${model.modelType}" needs its own GGUF architecture keys (llama.cpp's ${model.modelType} architecture), which the GGUF writer does not write; it writes the llama architecture, for model_type ${GGUF_MODEL_TYPES.join(', ')}`;
}

export const ggufOutput: OutputDef<GgufOutput, ExportGgufParams, EvaluateGgufParams> = {
  format: 'gguf',
  properties: { format: 'always', path: 'always', type: 'always' },
  supports,
  warns,
  supportsModel,
  write: { step: stepDef('export-gguf', 1, async () => (await import('./export-step.js')).exportGgufStep), params: (o) => ({ format: 'gguf', type: o.type }) },
  evaluate: { role: 'gguf', label: 'GGUF file', step: stepDef('evaluate-gguf', 1, async () => (await import('./evaluate-step.js')).evaluateGgufStep), input: 'gguf', params: (batchSize) => ({ batch_size: batchSize }) },
  open: {
    detect: (path) => {
      try {
        return existsSync(fileOf(path)) && statSync(fileOf(path)).isFile();
      } catch {
        return false;
      }
    },
    async open(rt, path) {
      const [{ openWeights }, { GgufSource }] = await Promise.all([import('../../graphs/open.js'), import('../../model/gguf-source.js')]);
      const source = await GgufSource.open(fileOf(path));
      return { ...openWeights(rt, 'gguf', source), dir: path.endsWith('.gguf') ? dirname(path) : path };
    },
  },
};
