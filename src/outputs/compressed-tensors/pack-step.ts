// Step `pack`: the compressed-tensors checkpoint (what vLLM loads) from the base model and the final layer
// states: quantized Linears packed, every other tensor copied in the model's dtype, config.json with
// quantization_config, tokenizer and generation files copied. Tensors stream one at a time.

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { compressInputScales, compressModule, quantizationConfig, toModelDtype } from '../../formats/compressed-tensors.js';
import type { ModuleQuant } from '../../quant/module-quant.js';
import { SafetensorsWriter } from '../../formats/safetensors.js';
import { HfSource } from '../../model/source.js';
import type { Tensor } from '../../tensor.js';
import { readLayerState } from '../../steps/layer-state.js';
import { inputList, requireModel, type StepImpl } from '../../steps/types.js';
import { copySideFiles } from '../side-files.js';

export interface PackParams {
  format: 'compressed-tensors';
}

export const packStep: StepImpl<'pack', PackParams> = {
  kind: 'pack',
  async run(ctx) {
    const states = inputList(ctx, 'states');
    const writer = new SafetensorsWriter(ctx.outDir, { maxShardBytes: 5e9 });
    const src = await HfSource.open(requireModel(ctx));
    try {
      const { config: cfg, arch, checkpoint } = src;
      const dtypeOf = async (name: string): Promise<'float32' | 'bfloat16' | 'float16'> => {
        const d = (await checkpoint.info(name)).dtype;
        return d === 'bfloat16' || d === 'float16' ? d : 'float32';
      };
      const copy = async (name: string, t?: Tensor<'float32'>): Promise<void> => {
        await writer.add(name, toModelDtype(t ?? (await src.tensor(name)), await dtypeOf(name)));
      };
      const quantized = new Map<string, ModuleQuant>();
      let bytesIn = 0;
      await copy(arch.embedding);
      for (let l = 0; l < cfg.numLayers; l++) {
        const s = states[l];
        if (!s) throw new Error(`pack: no state for layer ${l}`);
        const state = await readLayerState(s.dir, l);
        const prefix = arch.layerPrefix(l);
        for (const name of arch.layerTensors(cfg, l)) {
          const local = name.slice(prefix.length);
          const module = local.replace(/\.weight$/, '');
          const q = local.endsWith('.weight') ? state.quant[module] : undefined;
          bytesIn += (await checkpoint.info(name)).byteRange[1] - (await checkpoint.info(name)).byteRange[0];
          if (!q) {
            await copy(name, state.tensors[local]);
            continue;
          }
          const compressed = [...compressModule(`${prefix}${module}`, q, await dtypeOf(name)), ...compressInputScales(`${prefix}${module}`, q, state.tensors, module, await dtypeOf(name))];
          for (const [n, t] of compressed) await writer.add(n, t);
          quantized.set(`${prefix}${module}`, { weights: q.weights, input_activations: q.input_activations });
        }
        ctx.progress(l + 1, cfg.numLayers);
      }
      await copy(arch.finalNorm);
      if (!cfg.tieWordEmbeddings) await copy('lm_head.weight');
      const written = await writer.finish();
      const linears = arch.modules(cfg).filter((m) => m.className === 'Linear').map((m) => m.name);
      const ignore = linears.filter((n) => !quantized.has(n));
      const config = { ...cfg.raw, quantization_config: quantizationConfig(quantized, ignore) };
      await writeFile(join(ctx.outDir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
      await copySideFiles(src.dir, ctx.outDir);
      return { format: 'compressed-tensors', quantized_modules: quantized.size, ignored: ignore.length, bytes: written.totalSize, layer_bytes_in: bytesIn };
    } catch (e) {
      await writer.abort().catch(() => undefined);
      throw e;
    } finally {
      await src.close();
    }
  },
};
