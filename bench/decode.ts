// Greedy decoding speed of exported ONNX models, batch 1: fp32 vs int4 MatMulNBits (accuracy_level 0 and 4)
// vs W8A8 (per-token int8 MatMulInteger), on the same model in the same process.
// Usage: npx tsx bench/decode.ts [model dir] [--size 100m]   (default: generate the 100m example model)

import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { quantizeWeightRtn } from '../src/algo/fake-quant.js';
import { presetScheme } from '../src/quant/scheme.js';
import { ExternalData, writeModelFile } from '../src/formats/onnx-file.js';
import type { QuantizedModule } from '../src/quant/module-quant.js';
import { writeExampleModel } from '../src/steps/example-model.js';
import { buildExportGraph, type ExportLayer } from '../src/graphs/export-graph.js';
import { OnnxModel } from '../src/graphs/onnx-model.js';
import { HfSource } from '../src/model/source.js';
import { Runtime } from '../src/ort/session.js';
import { tensor } from '../src/tensor.js';
import { median, table } from './util.js';

const RUNS = 3;
const NEW_TOKENS = 32;
const rt = new Runtime({ device: 'cpu' });
const work = mkdtempSync(join(tmpdir(), 'qf-bench-decode-'));
let dir = process.argv[2];
if (!dir || dir.startsWith('--')) {
  dir = join(work, 'model');
  await writeExampleModel(rt, dir, { size: '100m', seed: 0, dtype: 'f32' });
}
const src = await HfSource.open(dir);
const cfg = src.config;

async function quantLayer(l: number, scheme: string | undefined): Promise<ExportLayer> {
  const tensors = await src.layer(l);
  const quant: Record<string, QuantizedModule> = {};
  if (scheme) {
    const s = presetScheme(scheme, ['Linear']);
    for (const lin of src.arch.layer(cfg, 0).linears) {
      const w = tensors[`${lin.local}.weight`]!;
      const [rows, cols] = w.dims as [number, number];
      const q = await quantizeWeightRtn(w.data, rows, cols, s.weights!, { runtime: rt });
      tensors[`${lin.local}.weight`] = tensor('float32', [rows, cols], q.dequantized);
      quant[lin.local] = { weights: s.weights!, input_activations: s.input_activations, codes: tensor('int8', [rows, cols], q.codes), scale: tensor('float32', q.scaleDims, q.scale), ...(s.weights!.symmetric ? {} : { zeroPoint: tensor('int8', q.scaleDims, q.zeroPoint) }) };
    }
  }
  return { tensors, quant };
}

async function exportVariant(name: string, scheme: string | undefined, accuracyLevel: number): Promise<string> {
  const out = join(work, name);
  await mkdir(join(out, 'onnx'), { recursive: true });
  const data = new ExternalData(join(out, 'onnx', 'model.onnx_data'));
  const g = await buildExportGraph({ config: cfg, arch: src.arch, tensor: (n) => src.tensor(n), layer: (l) => quantLayer(l, scheme) }, data, { accuracyLevel });
  await data.finish();
  await writeModelFile(join(out, 'onnx', 'model.onnx'), g.build());
  return out;
}

const variants: [string, string | undefined, number][] = [
  ['fp32', undefined, 0],
  ['int4 W4A16 (accuracy_level 0)', 'W4A16', 0],
  ['int4 W4A16 (accuracy_level 4)', 'W4A16', 4],
  ['W8A8 (per-token int8)', 'W8A8', 0],
];
const rows: string[][] = [];
let base = 0;
for (const [name, scheme, level] of variants) {
  const model = await OnnxModel.open(rt, await exportVariant(name.replace(/\W+/g, '-'), scheme, level), cfg);
  await model.generate([1, 300, 301], 4, false);
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    await model.generate([1, 300, 301], NEW_TOKENS, false);
    times.push(performance.now() - t0);
  }
  const tokPerS = NEW_TOKENS / (median(times) / 1000);
  if (!scheme) base = tokPerS;
  rows.push([name, tokPerS.toFixed(1), `${(tokPerS / base).toFixed(2)}×`]);
  await model.close();
}
const params = src.arch.layer(cfg, 0).linears.reduce((s, l) => s + l.inFeatures * l.outFeatures, 0) * cfg.numLayers;
console.log(`model: ${dir} (${cfg.numLayers} layers, hidden ${cfg.hiddenSize}, ${(params / 1e6).toFixed(0)} M Linear parameters)\n`);
console.log(table(['export', 'tokens/s', 'vs fp32'], rows));
console.log(`\nbatch 1, ${NEW_TOKENS} new tokens after a 3-token prompt, median of ${RUNS} runs after a warm-up; ${rt.threads} threads.`);
await src.close();
await rt.close();
rmSync(work, { recursive: true, force: true });
