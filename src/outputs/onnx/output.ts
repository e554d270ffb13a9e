// Output `onnx`: the whole model as one graph with a KV cache in the Optimum / transformers.js layout
// (onnx/model.onnx + model.onnx_data; src/graphs/export-graph.ts builds it). quantforge runs the export
// itself to report its perplexity beside the fake-quantized model's, and `eval` / `generate` run it whole.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { OutputDef, OutputOptions, PlannedModule } from '../output-def.js';
import { ggufTypeOf } from '../../quant/gguf-scheme.js';
import { stepDef } from '../../steps/types.js';
import type { EvaluateOnnxParams } from './evaluate-step.js';
import type { ExportOnnxParams } from './export-step.js';

export interface OnnxOutput extends OutputOptions {
  readonly format: 'onnx';
  /** MatMulNBits accuracy_level of int4 weights: 4 int8 activations (the fast CPU path), 0 fp32 math */
  readonly accuracy_level: 0 | 1 | 2 | 3 | 4;
}

/**
 * int schemes only: onnxruntime's CPU provider casts to float8 but has no float8 or float4 matmul (MatMul rejects
 * float8 inputs, com.microsoft::GemmFloat8 has no CPU kernel, float4 Cast has none; docs/float-formats-onnxruntime.md)
 */
function supports(m: PlannedModule): string | undefined {
  const w = m.quant.weights;
  const gguf = ggufTypeOf(w);
  if (gguf !== undefined) return `GGUF_${gguf} blocks are written by the gguf output only (llama.cpp); the onnx output takes W4A16, W4A16_ASYM, W8A16, W8A8, W4A8 and int config groups`;
  if (w.type !== 'float') return undefined;
  return `onnxruntime's CPU provider has no ${w.num_bits === 8 ? 'float8' : 'float4'} matmul, so ${w.num_bits}-bit float weights (FP8, NVFP4, MXFP4 schemes) are written by the compressed-tensors output only; the onnx output takes W4A16, W4A16_ASYM, W8A16, W8A8, W4A8 and int config groups`;
}

export const onnxOutput: OutputDef<OnnxOutput, ExportOnnxParams, EvaluateOnnxParams> = {
  format: 'onnx',
  properties: { format: 'always', path: 'always', accuracy_level: 'always' },
  supports,
  // export-onnx 3: int4 q/k/v and gate/up stacked into one MatMulNBits each (same numbers, another file);
  // 4: residual Add + RMSNorm as SkipSimplifiedLayerNormalization (its rounding differs: the last bits move)
  write: { step: stepDef('export-onnx', 4, async () => (await import('./export-step.js')).exportOnnxStep), params: (o) => ({ format: 'onnx', accuracy_level: o.accuracy_level }) },
  evaluate: { role: 'onnx', label: 'ONNX export', step: stepDef('evaluate-onnx', 1, async () => (await import('./evaluate-step.js')).evaluateOnnxStep), input: 'onnx', params: (batchSize) => ({ batch_size: batchSize }) },
  open: {
    detect: (dir) => existsSync(join(dir, 'onnx', 'model.onnx')),
    async open(rt, dir) {
      const { OnnxModel } = await import('../../graphs/onnx-model.js');
      const model = await OnnxModel.openDir(rt, dir);
      return {
        dir,
        format: 'onnx',
        config: model.config,
        perplexity: (windows, options) => model.perplexity(windows, options),
        generate: (prompt, maxNewTokens) => model.generate(prompt, maxNewTokens),
        close: () => model.close(),
      };
    },
  },
};
