// GPTQ benchmark. (a) The quantize phase of one synthetic Linear (default 4096×4096, W4A16 group 128,
// actorder static) with a random SPD Hessian: median of several runs, split into inverse (dampening,
// Cholesky, inverse factor) and solve (column pass), and the share of the time spent inside onnxruntime.
// (b) With a model directory: the per-phase split (capture / hessian / quantize / metrics / propagate) of the
// gptq step over the first layers, calibrating on windows of a text file.
//
//   npx tsx bench/gptq.ts [modelDir] [--size 4096] [--runs 3] [--scheme W4A16] [--calib file]
//                         [--samples 32] [--seq-len 128] [--layers 2] [--dampening 0.01] [--threads n]

import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { gptqQuantize } from '../src/algo/gptq.js';
import { presetScheme } from '../src/quant/scheme.js';
import type { Json } from '../src/cache/key.js';
import { embed } from '../src/model/embed.js';
import { HfSource } from '../src/model/source.js';
import { loadTokenizer } from '../src/model/tokenizer.js';
import { cutWindows, readDatasetText } from '../src/model/windows.js';
import { gram } from '../src/ort/kernels/linalg.js';
import { Kernel, Runtime } from '../src/ort/session.js';
import { writeHidden } from '../src/steps/activations.js';
import { gptqStep, type GptqParams } from '../src/steps/gptq.js';
import { tensor } from '../src/tensor.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    size: { type: 'string', default: '4096' },
    runs: { type: 'string', default: '3' },
    scheme: { type: 'string', default: 'W4A16' },
    calib: { type: 'string' },
    samples: { type: 'string', default: '32' },
    'seq-len': { type: 'string', default: '128' },
    layers: { type: 'string', default: '2' },
    dampening: { type: 'string', default: '0.01' },
    threads: { type: 'string' },
  },
});

const rt = new Runtime({ device: 'cpu', ...(values.threads ? { threads: Number(values.threads) } : {}) });
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const fmt = (ms: number): string => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`);

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

async function syntheticLinear(n: number, runs: number, scheme: string): Promise<void> {
  const rnd = lcg(1);
  const m = n + 256;
  const x = new Float32Array(m * n);
  for (let t = 0; t < m; t++) {
    const c = rnd();
    for (let j = 0; j < n; j++) x[t * n + j] = rnd() + 0.3 * c;
  }
  const h = (await gram(rt, tensor('float32', [m, n], x))).data as Float64Array;
  for (let i = 0; i < h.length; i++) h[i] = ((h[i] as number) * 2) / m;
  const w = Float32Array.from({ length: n * n }, () => rnd() * 0.1);
  const args = presetScheme(scheme, ['Linear']).weights!;
  const rows: { total: number; inverse: number; solve: number; ort: number; cpu: number }[] = [];
  for (let r = 0; r < runs; r++) {
    const busy = Kernel.busyMs;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const q = await gptqQuantize(w, n, n, h, args, { runtime: rt, blockSize: 128, dampeningFrac: 0.01, actorder: 'static' });
    const total = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    rows.push({ total, inverse: q.timing.inverseMs, solve: q.timing.solveMs, ort: Kernel.busyMs - busy, cpu: (cpu.user + cpu.system) / 1000 });
  }
  console.log(`\n### GPTQ quantize phase, synthetic ${n}×${n} Linear (${scheme}, block 128, actorder static), ${runs} runs, ${rt.threads} threads\n`);
  console.log(`load average before: ${loadavg()[0]?.toFixed(2)} (other processes share the cores; CPU time is the work done)\n`);
  console.log('| run | total (wall) | inverse (damp + Cholesky + inverse factor) | solve (column pass) | inside onnxruntime | CPU time, all threads |');
  console.log('|---|---|---|---|---|---|');
  rows.forEach((r, i) => console.log(`| ${i + 1} | ${fmt(r.total)} | ${fmt(r.inverse)} | ${fmt(r.solve)} | ${fmt(r.ort)} (${((100 * r.ort) / r.total).toFixed(0)}%) | ${fmt(r.cpu)} |`));
  const med = median(rows.map((r) => r.total));
  const ortShare = median(rows.map((r) => r.ort / r.total));
  console.log(`| **median** | **${fmt(med)}** | ${fmt(median(rows.map((r) => r.inverse)))} | ${fmt(median(rows.map((r) => r.solve)))} | ${(100 * ortShare).toFixed(0)}% | ${fmt(median(rows.map((r) => r.cpu)))} |`);
}

async function modelPhases(modelDir: string): Promise<void> {
  const src = await HfSource.open(modelDir);
  const root = mkdtempSync(join(tmpdir(), 'qf-bench-gptq-'));
  try {
    const seq = Number(values['seq-len']);
    const calib = values.calib ?? join(modelDir, 'calib.txt');
    const ids = cutWindows(loadTokenizer(modelDir).encode(readDatasetText(calib)), seq, Number(values.samples));
    const [N] = ids.dims as [number, number];
    let hiddenDir = mkdtempSync(join(root, 'embed-'));
    await writeHidden(hiddenDir, tensor('float32', [N, seq, src.config.hiddenSize], embed(await src.tensor(src.arch.embedding), ids.data)));
    const scheme = presetScheme(values.scheme as string, ['Linear']);
    const modules = Object.fromEntries(src.arch.layer(src.config, 0).linears.map((l) => [l.local, { weights: scheme.weights!, input_activations: scheme.input_activations }]));
    const layers = Math.min(Number(values.layers), src.config.numLayers);
    console.log(`\n### gptq step per phase: ${modelDir} (${values.scheme}, ${N} windows × ${seq} tokens, dampening ${values.dampening}), ${rt.threads} threads\n`);
    console.log('| layer | capture | hessian | quantize | metrics | propagate | wall | worst gptq/rtn output error |');
    console.log('|---|---|---|---|---|---|---|---|');
    for (let layer = 0; layer < layers; layer++) {
      const outDir = mkdtempSync(join(root, `layer-${layer}-`));
      const params: GptqParams = { layer, modules, block_size: 128, dampening_frac: Number(values.dampening), actorder: 'static', offload_hessians: false };
      const t0 = performance.now();
      const result = (await gptqStep.run({
        id: `bench.gptq/layer.${layer}`,
        params,
        inputs: { hidden: { id: 'embed', kind: 'embed', dir: hiddenDir, result: null } },
        files: {},
        modelDir,
        outDir,
        runtime: rt,
        progress: () => {},
        warn: (m) => console.error(`warning: ${m}`),
        signal: new AbortController().signal,
      })) as Record<string, Json>;
      const wall = performance.now() - t0;
      const t = result.timing_ms as Record<string, number>;
      const ratio = Math.max(...Object.values(result.modules as Record<string, Record<string, number>>).map((m) => (m.output_error as number) / (m.rtn_output_error as number)));
      console.log(`| ${layer} | ${fmt(t.capture!)} | ${fmt(t.hessian!)} | ${fmt(t.quantize!)} | ${fmt(t.metrics!)} | ${fmt(t.propagate!)} | ${fmt(wall)} | ${ratio.toFixed(3)} |`);
      hiddenDir = outDir;
    }
  } finally {
    await src.close();
    rmSync(root, { recursive: true, force: true });
  }
}

await syntheticLinear(Number(values.size), Number(values.runs), values.scheme as string);
if (positionals[0]) await modelPhases(positionals[0]);
await rt.close();
