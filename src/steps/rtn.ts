// Step `rtn` (Simple PTQ): quantize every targeted Linear of one layer with its observer's qparams and
// round-to-nearest (half to even), exactly as compressed-tensors computes them. GGUF schemes: ggml's reference
// quantizer, byte for byte what llama-quantize writes without an imatrix.

import { quantizeWeightRtn } from '../algo/fake-quant.js';
import type { Json } from '../cache/key.js';
import { openLayerInput, writeLayerState } from './layer-state.js';
import type { ModuleQuant } from '../quant/module-quant.js';
import { ggufModule, relativeError, setQuantized, setQuantizedGguf } from './quantized-module.js';
import { quantizeGgufRtn } from '../quant/gguf-weight.js';
import type { StepImpl } from './types.js';

export interface RtnParams {
  layer: number;
  modules: Record<string, ModuleQuant>;
}

export const rtnStep: StepImpl<'rtn', RtnParams> = {
  kind: 'rtn',
  version: 1,
  async run(ctx) {
    const { src, state } = await openLayerInput(ctx, ctx.params.layer);
    try {
      const errors: Record<string, Json> = {};
      const modules = Object.entries(ctx.params.modules);
      for (const [i, [local, module]] of modules.entries()) {
        const w = state.tensors[`${local}.weight`];
        if (!w) throw new Error(`layer ${ctx.params.layer} has no weight ${local}`);
        const [rows, cols] = w.dims as [number, number];
        const gguf = ggufModule(module, cols);
        if (gguf) {
          if ('skip' in gguf) errors[local] = { skipped: gguf.skip };
          else {
            const q = quantizeGgufRtn(gguf.type, w.data, rows, cols);
            errors[local] = { weight_error: relativeError(w.data, q.dequantized), gguf: gguf.type, ...(gguf.note ? { note: gguf.note } : {}) };
            setQuantizedGguf(state, local, q, gguf.module);
          }
          ctx.progress(i + 1, modules.length, local);
          continue;
        }
        const q = await quantizeWeightRtn(w.data, rows, cols, module.weights, { runtime: ctx.runtime });
        errors[local] = { weight_error: relativeError(w.data, q.dequantized) };
        setQuantized(state, local, rows, cols, q, module);
        ctx.progress(i + 1, modules.length, local);
      }
      await writeLayerState(ctx.outDir, state);
      return { layer: ctx.params.layer, modules: errors };
    } finally {
      await src.close();
    }
  },
};
