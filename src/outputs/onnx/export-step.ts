// Step `export-onnx`: the quantized model as one ONNX graph with a KV cache (src/graphs/export-graph.ts), in the
// directory layout of Optimum / transformers.js: onnx/model.onnx (+ model.onnx_data), config.json, tokenizer
// and generation files.

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ExternalData, writeModelFile } from '../../formats/onnx-file.js';
import { buildExportGraph } from '../../graphs/export-graph.js';
import { HfSource } from '../../model/source.js';
import { readLayerState } from '../../steps/layer-state.js';
import { inputList, requireModel, type StepImpl } from '../../steps/types.js';
import { copySideFiles } from '../side-files.js';

export interface ExportOnnxParams {
  format: 'onnx';
  /** MatMulNBits accuracy_level (4: int8 activations inside the int4 matmul, the fast path on CPU) */
  accuracy_level?: number;
}

export const exportOnnxStep: StepImpl<'export-onnx', ExportOnnxParams> = {
  kind: 'export-onnx',
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
      await copySideFiles(src.dir, ctx.outDir);
      return { format: 'onnx', external_data: data.used, nodes: g.nodes.length };
    } catch (e) {
      await data.abort();
      throw e;
    } finally {
      await src.close();
    }
  },
};
