// Greedy decoding speed of exported ONNX models, batch 1: fp32 vs int4 MatMulNBits (accuracy_level 0 and 4)
// vs W8A8 (per-token int8 MatMulInteger), on the same model in the same process. With --base DIR (another
// checkout) its export and decoding code run the same variants, interleaved with this tree's, round by round.
// Rounds during which other processes used ≥ 10% of the machine are left out (bench/util.ts foreignShare).
// --tokens N decodes N new tokens per round (default 32); OnnxModel.generate's KV buffers grow with the sequence, so
// long generations show what the buffer length costs GroupQueryAttention.
// Usage: npx tsx bench/decode.ts [model dir] [--base DIR] [--runs 5] [--budget 600 (s)] [--threads N] [--linears] [--tokens 32]
// (default: generate the 100m example model)

import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { quantizeWeightRtn } from '../src/algo/fake-quant.js';
import { presetScheme } from '../src/quant/scheme.js';
import { ExternalData, writeModelFile } from '../src/formats/onnx-file.js';
import type { QuantizedModule } from '../src/quant/module-quant.js';
import { writeExampleModel } from '../src/steps/example-model.js';
import type { ExportLayer } from '../src/graphs/export-graph.js';
import { HfSource } from '../src/model/source.js';
import { Runtime } from '../src/ort/session.js';
import { tensor } from '../src/tensor.js';
import { chain, fp32, nbits, TOKEN } from './decode-linears.js';
import { foreignShare, median, table } from './util.js';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { base: { type: 'string' }, runs: { type: 'string', default: '5' }, budget: { type: 'string', default: '600' }, threads: { type: 'string' }, linears: { type: 'boolean', default: false }, tokens: { type: 'string', default: '32' } } });
const RUNS = Number(values.runs);
const BUDGET_S = Number(values.budget);
const NEW_TOKENS = Number(values.tokens);
const rt = new Runtime({ device: 'cpu', ...(values.threads ? { threads: Number(values.threads) } : {}) });
const work = mkdtempSync(join(tmpdir(), 'qf-bench-decode-'));
let dir = positionals[0];
if (!dir) {
  dir = join(work, 'model');
  await writeExampleModel(rt, dir, { size: '100m', seed: 0, dtype: 'f32' });
}
const src = await HfSource.open(dir);
const cfg = src.config;

type ExportModule = typeof import('../src/graphs/export-graph.js');
type ModelModule = typeof import('../src/graphs/onnx-model.js');
const trees: [string, ExportModule, ModelModule][] = [];
for (const [name, root] of [['this tree', resolve(import.meta.dirname, '..')], ...(values.base ? [['base', resolve(values.base)]] : [])] as [string, string][]) {
  const load = async <T>(p: string): Promise<T> => (await import(pathToFileURL(join(root, 'src', p)).href)) as T;
  trees.push([name, await load<ExportModule>('graphs/export-graph.ts'), await load<ModelModule>('graphs/onnx-model.ts')]);
}

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

async function exportVariant(exporter: ExportModule, name: string, scheme: string | undefined, accuracyLevel: number): Promise<string> {
  const out = join(work, name);
  await mkdir(join(out, 'onnx'), { recursive: true });
  const data = new ExternalData(join(out, 'onnx', 'model.onnx_data'));
  const g = await exporter.buildExportGraph({ config: cfg, arch: src.arch, tensor: (n) => src.tensor(n), layer: (l) => quantLayer(l, scheme) }, data, { accuracyLevel });
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
const load0 = loadavg()[0]!;
type Opened = Awaited<ReturnType<ModelModule['OnnxModel']['open']>>;
const models: { tree: string; variant: string; model: Opened; times: number[]; all: number[]; cpu: number[] }[] = [];
for (const [tree, exporter, runner] of trees) {
  for (const [name, scheme, level] of variants) {
    const model = await runner.OnnxModel.open(rt, await exportVariant(exporter, `${tree}-${name}`.replace(/\W+/g, '-'), scheme, level), cfg);
    await model.generate([1, 300, 301], 4, false);
    models.push({ tree, variant: name, model, times: [], all: [], cpu: [] });
  }
}
// --linears: one token's Linear work alone (bench/decode-linears.ts), fp32 MatMul and int4 MatMulNBits block 128
// accuracy_level 4, timed in the same rounds, so the share of a token outside the Linears is measured in this run
const linears = values.linears
  ? await Promise.all([fp32, nbits(128, 4)].map(async (path) => {
      const { graph, K0 } = chain(path, TOKEN, true);
      const kernel = await rt.kernel(`decode-linears:${path.name}`, () => graph);
      const x = tensor('float32', [1, K0], new Float32Array(K0).fill(0.5));
      await kernel.run({ x });
      return { name: path.name, run: () => kernel.run({ x }), cpu: [] as number[], wall: [] as number[] };
    }))
  : [];
// rounds during which other processes used ≥ 10% of the machine are left out (a shared machine), until each model
// has RUNS quiet rounds or BUDGET_S seconds have passed; then all rounds count for a model that had none
const deadline = performance.now() + BUDGET_S * 1000;
let rounds = 0;
while ((rounds < RUNS || models.some((m) => m.times.length < RUNS)) && (rounds < RUNS || performance.now() < deadline)) {
  rounds++;
  for (const m of models) {
    const c0 = process.cpuUsage();
    const { ms, foreign } = await foreignShare(() => m.model.generate([1, 300, 301], NEW_TOKENS, false));
    const c = process.cpuUsage(c0);
    m.all.push(ms);
    m.cpu.push((c.user + c.system) / 1000 / NEW_TOKENS);
    if (!(foreign >= 0.1)) m.times.push(ms);
  }
  for (const k of linears) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < NEW_TOKENS; i++) await k.run();
    k.wall.push((performance.now() - t0) / NEW_TOKENS);
    const c = process.cpuUsage(c0);
    k.cpu.push((c.user + c.system) / 1000 / NEW_TOKENS);
  }
}
const quietCounts = models.map((m) => m.times.length);
for (const m of models) if (m.times.length === 0) m.times.push(...m.all);
const rows: string[][] = [];
for (const [name] of variants) {
  const row = [name];
  for (const [tree] of trees) {
    const fpModel = models.find((m) => m.tree === tree && m.variant === 'fp32')!;
    const model = models.find((m) => m.tree === tree && m.variant === name)!;
    const fp = NEW_TOKENS / (median(fpModel.times) / 1000);
    const tok = NEW_TOKENS / (median(model.times) / 1000);
    row.push(tok.toFixed(1), `${(tok / fp).toFixed(2)}×`, median(model.cpu).toFixed(2), `${(median(fpModel.cpu) / median(model.cpu)).toFixed(2)}×`);
  }
  rows.push(row);
}
for (const m of models) await m.model.close();
const params = Array.from({ length: cfg.numLayers }, (_, l) => src.arch.layer(cfg, l).linears.reduce((s, x) => s + x.inFeatures * x.outFeatures, 0)).reduce((a, b) => a + b, 0);
console.log(`model: ${dir} (${cfg.numLayers} layers, hidden ${cfg.hiddenSize}, ${(params / 1e6).toFixed(0)} M Linear parameters)\n`);
console.log(table(['export', ...trees.flatMap(([t]) => [`tokens/s (${t})`, `vs fp32 (${t})`, `CPU ms per token (${t})`, `fp32 CPU / CPU (${t})`])], rows));
console.log(`\nbatch 1, ${NEW_TOKENS} new tokens after a 3-token prompt, median over the quiet rounds (other processes used < 10% of the machine: ${Math.min(...quietCounts)}–${Math.max(...quietCounts)} of ${rounds} per export; interleaved) after a warm-up; CPU time (process user + system, all rounds' median) means work done only at 1 thread (idle intra-op threads spin); ${rt.threads} threads; load average ${load0.toFixed(2)} at start, ${loadavg()[0]!.toFixed(2)} at end.`);
if (linears.length > 0) {
  // Amdahl: a token = its Linears + the rest; int4 reaches 5× fp32 only if its token fits in fp32's / 5
  const tok = (v: string) => median(models.find((m) => m.tree === 'this tree' && m.variant === v)!.cpu);
  const [F, Q] = [tok('fp32'), tok('int4 W4A16 (accuracy_level 4)')];
  const [Lf, Lq] = linears.map((k) => median(k.cpu)) as [number, number];
  console.log(`\nCPU ms per token (this tree, medians of all rounds): fp32 token ${F.toFixed(2)} = Linears ${Lf.toFixed(2)} + rest ${(F - Lf).toFixed(2)}; int4 (accuracy_level 4) token ${Q.toFixed(2)} = Linears ${Lq.toFixed(2)} + rest ${(Q - Lq).toFixed(2)}.`);
  console.log(`Linear kernels fp32 / int4: ${(Lf / Lq).toFixed(2)}×; decode fp32 / int4: ${(F / Q).toFixed(2)}×; with the int4 rest as measured, 5× needs int4 Linears ≤ ${(F / 5 - (Q - Lq)).toFixed(2)} ms (${(Lq / Math.max(1e-9, F / 5 - (Q - Lq))).toFixed(2)}× faster than measured); with free Linears the ratio would be ${(F / (Q - Lq)).toFixed(2)}×.`);
  console.log(`wall ms per token of the Linears alone (medians): fp32 ${median(linears[0]!.wall).toFixed(2)}, int4 ${median(linears[1]!.wall).toFixed(2)}.`);
}
await src.close();
await rt.close();
rmSync(work, { recursive: true, force: true });
