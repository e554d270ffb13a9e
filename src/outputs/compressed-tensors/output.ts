// Output `compressed-tensors`: a HuggingFace directory vLLM loads (pack-quantized or int-quantized weights,
// config.json with quantization_config; src/formats/compressed-tensors.ts has the layout). `eval` and
// `generate` read such a directory back layer by layer, dequantizing on load.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openWeights } from '../../graphs/open.js';
import { CompressedTensorsSource } from '../../model/compressed-tensors-source.js';
import { declaresCompressedTensors } from '../../model/quantization-config.js';
import type { OutputDef, OutputOptions } from '../output-def.js';
import { packStep, type PackParams } from './pack-step.js';

export interface CompressedTensorsOutput extends OutputOptions {
  readonly format: 'compressed-tensors';
}

/** config.json declares a compressed-tensors quantization_config */
function detect(dir: string): boolean {
  try {
    return declaresCompressedTensors(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>);
  } catch {
    return false;
  }
}

export const compressedTensorsOutput: OutputDef<CompressedTensorsOutput, PackParams> = {
  format: 'compressed-tensors',
  properties: { format: 'always', path: 'always' },
  write: { step: packStep, params: () => ({ format: 'compressed-tensors' }) },
  open: { detect, open: async (rt, dir) => openWeights(rt, 'compressed-tensors', await CompressedTensorsSource.open(dir)) },
};
