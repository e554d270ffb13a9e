// Forward-pass throughput: tokens/s of the layer-by-layer perplexity forward on real models, and its
// effective GFLOP/s as a fraction of the onnxruntime fp32 MatMul ceiling measured in the same process.
// Usage: npx tsx bench/forward.ts [model dir ...]   (default: the models in ../shared when present)

import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Graph } from '../src/ort/graph.js';
import { Runtime } from '../src/ort/session.js';
import { HfSource } from '../src/model/source.js';
import { perplexity } from '../src/graphs/perplexity.js';
import { seededRandom } from '../src/random.js';
import { tensor } from '../src/tensor.js';
import { median, table } from './util.js';

const RUNS = 5;
const T = 256;
const WINDOWS = 32;

async function matmulCeiling(rt: Runtime): Promise<number> {
  const n = 2048;
  const k = await rt.kernel('bench-mm', () => {
    const g = new Graph('mm');
    g.output(g.matmul(g.input('a', 'float32', [n, n]), g.input('b', 'float32', [n, n])), 'y');
    return g;
  });
  const a = tensor('float32', [n, n], new Float32Array(n * n).fill(0.5));
  await k.run({ a, b: a });
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    await k.run({ a, b: a });
    times.push(performance.now() - t0);
  }
  return (2 * n ** 3) / (median(times) / 1000) / 1e9;
}

const shared = resolve(import.meta.dirname, '../../shared/models');
const dirs = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['stories260K', 'babyllama-char105', 'wiki-llama-8m'].map((m) => join(shared, m)).filter(existsSync);
const rt = new Runtime({ device: 'cpu' });
const ceiling = await matmulCeiling(rt);
const rows: string[][] = [];
for (const dir of dirs) {
  const src = await HfSource.open(dir);
  const cfg = src.config;
  const rand = seededRandom(1);
  const ids = tensor('int32', [WINDOWS, T], Int32Array.from({ length: WINDOWS * T }, () => Math.floor(rand() * cfg.vocabSize)));
  await perplexity(rt, src, ids);
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) times.push((await perplexity(rt, src, ids)).seconds);
  const linearParams = src.arch.layer(cfg, 0).linears.reduce((s, l) => s + l.inFeatures * l.outFeatures, 0) * cfg.numLayers + cfg.vocabSize * cfg.hiddenSize;
  const attention = 4 * T * cfg.numHeads * cfg.headDim * cfg.numLayers;
  const flopsPerToken = 2 * linearParams + attention;
  const tokPerS = (WINDOWS * T) / median(times);
  const gflops = (tokPerS * flopsPerToken) / 1e9;
  rows.push([dir.split('/').pop()!, String(cfg.numLayers), String(cfg.hiddenSize), tokPerS.toFixed(0), gflops.toFixed(1), `${((100 * gflops) / ceiling).toFixed(0)}%`]);
  await src.close();
}
console.log(`onnxruntime fp32 MatMul ceiling (2048³, median of ${RUNS}): ${ceiling.toFixed(1)} GFLOP/s\n`);
console.log(table(['model', 'layers', 'hidden', 'tokens/s', 'GFLOP/s', 'of ceiling'], rows));
console.log(`\n${WINDOWS} windows × ${T} tokens per run, median of ${RUNS} runs after one warm-up; ${rt.threads} threads.`);
await rt.close();
