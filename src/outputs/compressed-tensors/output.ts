// Output `compressed-tensors`: a HuggingFace directory vLLM loads (pack-quantized or int-quantized weights,
// config.json with quantization_config; src/formats/compressed-tensors.ts has the layout). `eval` and
// `generate` read such a directory back layer by layer, dequantizing on load.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { declaresCompressedTensors } from '../../model/quantization-config.js';
import type { OutputDef, OutputOptions, PlannedModule } from '../output-def.js';
import { formatOf } from '../../formats/compressed-tensors.js';
import { elementKind } from '../../quant/quant-args.js';
import { ggufTypeOf } from '../../quant/gguf-scheme.js';
import { ReasonedError } from '../../diag/failure.js';
import { stepDef } from '../../steps/types.js';
import type { PackParams } from './pack-step.js';

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

/** formats/compressed-tensors.ts writes every scheme but asymmetric int weights with input activations; fp4 packs pairs of columns */
function supports(m: PlannedModule): string | undefined {
  const gguf = ggufTypeOf(m.quant.weights);
  if (gguf !== undefined) return `GGUF_${gguf} stores ggml blocks (float16 scales${gguf.endsWith('_K') ? ', 6-bit sub-scales' : ''}), which compressed-tensors has no format for; write it with the gguf output, or quantize with W4A16 / W4A16_ASYM / W8A16 for compressed-tensors`;
  try {
    formatOf(m.quant);
  } catch (e) {
    if (e instanceof ReasonedError) return e.message;
    throw e;
  }
  if (elementKind(m.quant.weights) === 'fp4' && m.shape[1] % 2 !== 0) return `fp4 weights are packed two per byte, so in_features must be even, found ${m.shape[1]}`;
  return undefined;
}

export const compressedTensorsOutput: OutputDef<CompressedTensorsOutput, PackParams> = {
  format: 'compressed-tensors',
  properties: { format: 'always', path: 'always' },
  supports,
  write: { step: stepDef('pack', 1, async () => (await import('./pack-step.js')).packStep), params: () => ({ format: 'compressed-tensors' }) },
  open: {
    detect,
    async open(rt, dir) {
      const [{ openWeights }, { CompressedTensorsSource }] = await Promise.all([import('../../graphs/open.js'), import('../../model/compressed-tensors-source.js')]);
      return openWeights(rt, 'compressed-tensors', await CompressedTensorsSource.open(dir));
    },
  },
};
