// Step `rtn` (Simple PTQ): quantize every targeted Linear of one layer with its observer's qparams and
// round-to-nearest, exactly as compressed-tensors computes them (NVFP4 global scales shared by Linears that
// read the same input, as llm-compressor does). Schemes with static input ranges (FP8, NVFP4) calibrate them
// first: the layer runs over its calibration inputs (`hidden`, the quantized chain), the ranges become
// `<local>.input_scale` / `<local>.input_global_scale`, and the quantized layer's outputs are the next
// layer's inputs. Other schemes need no calibration data.
// GGUF schemes: ggml's reference quantizer, byte for byte what llama-quantize writes without an imatrix.

import { quantizeWeightRtn, sharedGlobalScales } from '../algo/fake-quant.js';
import type { Json } from '../cache/key.js';
import { forEachBatch, propagate, readHidden, writeHidden } from './activations.js';
import { actQuantOf, openLayerInput, scaleDtypesOf, writeLayerState } from './layer-state.js';
import type { InputSite } from '../model/arch.js';
import type { ModuleQuant } from '../quant/module-quant.js';
import { ggufModule, relativeError, setQuantized, setQuantizedGguf } from './quantized-module.js';
import { quantizeGgufRtn } from '../quant/gguf-weight.js';
import { addRanges, setStaticInputScales, siblingsBySite, staticSites, withRanges } from './static-inputs.js';
import { optionalInput, type StepImpl } from './types.js';

export interface RtnParams {
  layer: number;
  modules: Record<string, ModuleQuant>;
}

export const rtnStep: StepImpl<'rtn', RtnParams> = {
  kind: 'rtn',
  async run(ctx) {
    const { src, state } = await openLayerInput(ctx, ctx.params.layer);
    try {
      const cfg = src.config;
      const layer = src.arch.layer(cfg, ctx.params.layer);
      const linears = layer.linears;
      const hiddenIn = optionalInput(ctx, 'hidden');
      const sites = staticSites(linears, ctx.params.modules);
      if (sites.length > 0 && !hiddenIn) throw new Error(`rtn layer ${ctx.params.layer}: static input quantization needs the layer's calibration inputs (role hidden)`);
      const hidden = hiddenIn ? await readHidden(hiddenIn.dir) : undefined;
      let inputScales: Record<string, number> = {};
      if (hidden && sites.length > 0) {
        const ranges = new Map<InputSite, number>();
        const options = { actQuant: actQuantOf(state.quant), tap: withRanges(undefined, sites)!, skipOut: true };
        await forEachBatch(ctx.runtime, cfg, layer, state.tensors, hidden, options, (out) => addRanges(ranges, out, sites));
        inputScales = setStaticInputScales(state, linears, ctx.params.modules, ranges, await scaleDtypesOf(src, ctx.params.layer, Object.keys(ctx.params.modules)));
      }
      const modules = Object.entries(ctx.params.modules);
      const scaleDtypes = await scaleDtypesOf(src, ctx.params.layer, Object.keys(ctx.params.modules));
      const weightOf = (local: string): { dims: readonly number[]; data: Float32Array } => {
        const w = state.tensors[`${local}.weight`];
        if (!w) throw new Error(`layer ${ctx.params.layer} has no weight ${local}`);
        return w;
      };
      const globals = sharedGlobalScales(Object.fromEntries(modules.map(([l, m]) => [l, { weight: weightOf(l).data, args: m.weights }])), siblingsBySite(linears));
      const errors: Record<string, Json> = {};
      for (const [i, [local, module]] of modules.entries()) {
        const w = weightOf(local);
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
        const globalScale = globals.get(local);
        const q = await quantizeWeightRtn(w.data, rows, cols, module.weights, { runtime: ctx.runtime, scaleDtype: scaleDtypes.get(local) ?? 'float32', ...(globalScale === undefined ? {} : { globalScale }) });
        errors[local] = { weight_error: q.weightError ?? relativeError(w.data, q.dequantized), ...(globalScale === undefined ? {} : { global_scale: globalScale }) };
        setQuantized(state, local, rows, cols, q, module);
        ctx.progress(i + 1, modules.length, local);
      }
      if (hidden) await writeHidden(ctx.outDir, await propagate(ctx.runtime, cfg, layer, state.tensors, hidden, actQuantOf(state.quant)));
      await writeLayerState(ctx.outDir, state);
      return { layer: ctx.params.layer, modules: errors, ...(Object.keys(inputScales).length > 0 ? { input_scales: inputScales } : {}) };
    } finally {
      await src.close();
    }
  },
};
