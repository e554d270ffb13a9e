// Step `export-gguf`: the quantized model as one GGUF file, <out>/model.gguf (formats/gguf/export.ts writes
// the metadata, names, q/k permutation and tensor data), with the tokenizer files beside it so quantforge's
// eval and generate read it too. Each quantized Linear is packed from its layer state: the codes the method
// chose and each block's stored qparams (`weight_gguf`), so nothing is rounded a second time; everything
// else (embedding, output, norms, Linears a method left unquantized) is stored as the model has it, or as
// the output's `type` says. Linears quantized with an integer compressed-tensors scheme are requantized to
// Q4_0 / Q4_1 / Q8_0 blocks at their own scales (quant/gguf-requantize.ts; the plan warns), their weight
// error against the fake-quantized weights reported per tensor.

import { join } from 'node:path';
import { exportGguf } from '../../formats/gguf/export.js';
import { HfSource } from '../../model/source.js';
import { ggufTypeOf, requantizeTarget } from '../../quant/gguf-scheme.js';
import { packGgufWeight } from '../../quant/gguf-weight.js';
import type { GgufBlockTypeName } from '../../quant/gguf-quantize.js';
import type { ModuleQuant } from '../../quant/module-quant.js';
import { readLayerState, readQuantInfo, type LayerState } from '../../steps/layer-state.js';
import { inputList, requireModel, type StepImpl } from '../../steps/types.js';
import type { Tensor } from '../../tensor.js';
import { ReasonedError } from '../../diag/failure.js';
import type { Json } from '../../cache/key.js';
import { requantizeToGguf } from '../../quant/gguf-requantize.js';
import { relativeError } from '../../steps/quantized-module.js';
import { copySideFiles } from '../side-files.js';
import { GGUF_FILE } from './gguf-file.js';

export interface ExportGgufParams {
  format: 'gguf';
  /** storage of unquantized 2-D tensors: auto = the model's dtype */
  type: 'auto' | 'f32' | 'f16' | 'bf16';
}

const DTYPES = { f32: 'float32', f16: 'float16', bf16: 'bfloat16' } as const;

export const exportGgufStep: StepImpl<'export-gguf', ExportGgufParams> = {
  kind: 'export-gguf',
  async run(ctx) {
    const states = inputList(ctx, 'states');
    const src = await HfSource.open(requireModel(ctx));
    try {
      const cfg = src.config;
      const layerOf = (hf: string): { layer: number; local: string } | undefined => {
        for (let l = 0; l < cfg.numLayers; l++) {
          const prefix = src.arch.layerPrefix(l);
          if (hf.startsWith(prefix)) return { layer: l, local: hf.slice(prefix.length) };
        }
        return undefined;
      };
      const infos = states.map((s) => (s ? readQuantInfo(s.dir) : {}));
      const moduleOf = (hf: string): ModuleQuant | undefined => {
        const at = layerOf(hf);
        return at === undefined ? undefined : infos[at.layer]?.[at.local.replace(/\.weight$/, '')];
      };
      // one layer state held at a time: the exporter asks for tensors layer by layer
      let held: LayerState | undefined;
      const stateOf = async (l: number): Promise<LayerState | undefined> => {
        const s = states[l];
        if (!s) return undefined;
        if (held?.layer !== l) held = await readLayerState(s.dir, l);
        return held;
      };
      const reader = {
        dir: src.dir,
        config: cfg,
        arch: src.arch,
        tensor: async (hf: string): Promise<Tensor<'float32'>> => {
          const at = layerOf(hf);
          const state = at === undefined ? undefined : await stateOf(at.layer);
          return (at !== undefined ? state?.tensors[at.local] : undefined) ?? src.tensor(hf);
        },
      };
      const packed: Record<string, string> = {};
      const requantized: Record<string, Json> = {};
      const inFeatures = (hf: string): number => {
        const at = layerOf(hf)!;
        return src.arch.layer(cfg, at.layer).linears.find((l) => `${l.local}.weight` === at.local)?.inFeatures ?? 0;
      };
      const typeOf = (hf: string): GgufBlockTypeName | undefined => {
        const m = moduleOf(hf);
        if (m === undefined) return undefined;
        const type = ggufTypeOf(m.weights) ?? requantizeTarget(m.weights);
        if (type === undefined) throw new ReasonedError('gguf-export-unsupported', `${hf} is quantized with ${m.weights.num_bits}-bit ${m.weights.type} weights, which have no GGUF block type`);
        // a requantized weight whose rows are no whole number of blocks stays unquantized (its fake-quantized values)
        return ggufTypeOf(m.weights) === undefined && inFeatures(hf) % 32 !== 0 ? undefined : type;
      };
      const r = await exportGguf(reader, join(ctx.outDir, GGUF_FILE), {
        type: dominantType(infos),
        typeOf,
        storedDtype: async (hf) => (ctx.params.type === 'auto' ? (await src.checkpoint.info(hf)).dtype : DTYPES[ctx.params.type]),
        encode: (hf, w, rows, cols, type) => {
          const at = layerOf(hf)!;
          const q = held?.quant[at.local.replace(/\.weight$/, '')];
          if (held?.layer === at.layer && q !== undefined && ggufTypeOf(q.weights) === undefined && requantizeTarget(q.weights) === type.name) {
            const target = type.name as 'Q4_0' | 'Q4_1' | 'Q8_0';
            const r = requantizeToGguf(target, w, rows, cols, { args: q.weights, scale: q.scale.data, zeroPoint: q.zeroPoint?.data, gIdx: q.gIdx?.data });
            requantized[hf] = { type: target, weight_error: relativeError(w, r.dequantized) };
            packed[hf] = type.name;
            return packGgufWeight(target, r.codes, r.qparams, rows, cols);
          }
          if (held?.layer !== at.layer || q?.gguf === undefined || ggufTypeOf(q.weights) !== type.name) {
            throw new ReasonedError('gguf-export-unsupported', `${hf}: the layer state holds no ${type.name} blocks for it`);
          }
          packed[hf] = type.name;
          return packGgufWeight(type.name as GgufBlockTypeName, q.codes.data, q.gguf.data, rows, cols);
        },
      });
      await copySideFiles(src.dir, ctx.outDir);
      return {
        format: 'gguf',
        bytes: r.bytes,
        packed: Object.keys(packed).length,
        ...(Object.keys(requantized).length > 0 ? { requantized } : {}),
        tensors: r.tensors.map((t) => ({ name: t.name, type: t.type, bytes: t.bytes })),
        warnings: [...r.warnings],
      };
    } finally {
      await src.close();
    }
  },
};

/** general.file_type: the block type most Linears are stored in */
function dominantType(infos: readonly Record<string, ModuleQuant>[]): 'F32' | NonNullable<ReturnType<typeof ggufTypeOf>> {
  const counts = new Map<string, number>();
  for (const info of infos) for (const m of Object.values(info)) {
    const t = ggufTypeOf(m.weights) ?? requantizeTarget(m.weights);
    if (t !== undefined) counts.set(t, (counts.get(t) ?? 0) + 1);
  }
  const best = [...counts].sort((a, b) => b[1] - a[1])[0];
  return (best?.[0] ?? 'F32') as 'F32';
}
