// Step `export-onnx`: the quantized model as one ONNX graph with a KV cache (src/model/export-graph.ts), in the
// directory layout of Optimum / transformers.js: onnx/model.onnx (+ model.onnx_data), config.json, tokenizer
// and generation files.

import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ExternalData, writeModelFile } from '../formats/onnx-file.js';
import { buildExportGraph } from '../model/export-graph.js';
import { HfSource } from '../model/source.js';
import { readLayerState } from './layer-state.js';
import { SIDE_FILES } from './pack.js';
import { inputList, requireModel, type StepImpl } from './types.js';

export interface ExportOnnxParams {
  format: 'onnx';
  /** MatMulNBits accuracy_level (4: int8 activations inside the int4 matmul, the fast path on CPU) */
  accuracy_level?: number;
}

export const exportOnnxStep: StepImpl<ExportOnnxParams> = {
  kind: 'export-onnx',
  version: 1,
  async run(ctx) {
    const states = inputList(ctx, 'states');
    await mkdir(join(ctx.outDir, 'onnx'), { recursive: true });
    const data = new ExternalData(join(ctx.outDir, 'onnx', 'model.onnx_data'));
    const src = await HfSource.open(requireModel(ctx));
    try {
      const g = await buildExportGraph(
        {
          config: src.config,
          arch: src.arch,
          tensor: (name) => src.tensor(name),
          layer: async (l) => {
            const s = states[l];
            return s ? readLayerState(s.dir, l) : { tensors: await src.layer(l), quant: {} };
          },
        },
        data,
        { accuracyLevel: ctx.params.accuracy_level ?? 0 },
        (l) => ctx.progress(l + 1, src.config.numLayers),
      );
      await data.finish();
      await writeModelFile(join(ctx.outDir, 'onnx', 'model.onnx'), g.build());
      const config = { ...src.config.raw, 'transformers.js_config': { use_external_data_format: data.used } };
      await writeFile(join(ctx.outDir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
      for (const f of SIDE_FILES) if (existsSync(join(src.dir, f))) await copyFile(join(src.dir, f), join(ctx.outDir, f));
      return { format: 'onnx', external_data: data.used, nodes: g.nodes.length };
    } catch (e) {
      await data.abort();
      throw e;
    } finally {
      await src.close();
    }
  },
};
