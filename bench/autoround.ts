// AutoRound benchmark: every decoder block of a model tuned in order (quantized chain against the
// full-precision chain, as the recipe runs it), timing ms per iteration and the share inside onnxruntime.
//
//   npx tsx bench/autoround.ts [modelDir] [--data file] [--samples 128] [--seqlen 256] [--iters 200]
//                              [--batch 8] [--runs 3] [--layers n] [--threads n]
//
// Without a model directory it generates the tiny example model into a temp dir (its calib.txt is the data).
// Prints a markdown table with the median over the runs.

import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { presetScheme } from '../src/quant/scheme.js';
import type { Json } from '../src/cache/key.js';
import { embed } from '../src/model/embed.js';
import { writeExampleModel } from '../src/steps/example-model.js';
import { HfSource } from '../src/model/source.js';
import { loadTokenizer } from '../src/model/tokenizer.js';
import { cutWindows, readDatasetText } from '../src/model/windows.js';
import { Runtime } from '../src/ort/session.js';
import { propagate, readHidden, writeHidden } from '../src/steps/activations.js';
import { autoroundStep } from '../src/steps/autoround.js';
import type { StepInputDir } from '../src/steps/types.js';
import { tensor } from '../src/tensor.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    data: { type: 'string' },
    samples: { type: 'string', default: '128' },
    seqlen: { type: 'string', default: '256' },
    iters: { type: 'string', default: '200' },
    batch: { type: 'string', default: '8' },
    runs: { type: 'string', default: '3' },
    layers: { type: 'string' },
    threads: { type: 'string' },
  },
});
const num = (s: string | undefined, name: string): number => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} ${s}: expected a non-negative integer`);
  return n;
};
const [samples, seqlen, iters, batch, runs] = [num(values.samples, 'samples'), num(values.seqlen, 'seqlen'), num(values.iters, 'iters'), num(values.batch, 'batch'), num(values.runs, 'runs')];
const rt = new Runtime({ device: 'cpu', ...(values.threads ? { threads: num(values.threads, 'threads') } : {}) });
const scratch = mkdtempSync(join(tmpdir(), 'qf-bench-autoround-'));
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const dirInput = (dir: string): StepInputDir => ({ id: dir, kind: 'bench', dir, result: null });

interface BlockRun { msPerIter: number; ortShare: number; wallMs: number; loss0: number; best: number; bestIter: number }

try {
  let modelDir = positionals[0];
  if (!modelDir) {
    modelDir = join(scratch, 'tiny');
    console.error('generating the tiny example model ...');
    await writeExampleModel(rt, modelDir, { size: 'tiny', seed: 0, dtype: 'f32' });
  }
  const data = values.data ?? join(modelDir, 'calib.txt');
  if (!existsSync(data)) throw new Error(`${data}: no calibration text; pass --data`);
  const src = await HfSource.open(modelDir);
  const cfg = src.config;
  const linears = src.arch.layer(cfg, 0).linears;
  const ids = cutWindows(loadTokenizer(modelDir).encode(readDatasetText(data)), seqlen, samples);
  const n = ids.dims[0]!;
  const layers = Math.min(cfg.numLayers, values.layers ? num(values.layers, 'layers') : cfg.numLayers);
  const weights = presetScheme('W4A16', ['Linear']).weights!;
  const modules = Object.fromEntries(linears.map((l) => [l.local, { weights, input_activations: null }]));

  // the full-precision chain: inputs of every block
  const fp: string[] = [mkdtempSync(join(scratch, 'fp-'))];
  await writeHidden(fp[0]!, tensor('float32', [n, seqlen, cfg.hiddenSize], embed(await src.tensor(src.arch.embedding), ids.data)));
  for (let l = 0; l < layers - 1; l++) {
    const next = mkdtempSync(join(scratch, 'fp-'));
    await writeHidden(next, await propagate(rt, cfg, src.arch.layer(cfg, l), await src.layer(l), await readHidden(fp[l]!), new Map()));
    fp.push(next);
  }

  const perBlock: BlockRun[][] = Array.from({ length: layers }, () => []);
  const totals: number[] = [];
  for (let r = 0; r < runs; r++) {
    let hidden = fp[0]!;
    const t0 = performance.now();
    for (let l = 0; l < layers; l++) {
      const outDir = mkdtempSync(join(scratch, 'q-'));
      const b0 = performance.now();
      const res = (await autoroundStep.run({
        id: `bench/layer.${l}`,
        params: { layer: l, modules, iters, lr: 1 / Math.max(1, iters), minmax_lr: 1 / Math.max(1, iters), batch_size: batch, nsamples: null, enable_minmax_tuning: true, not_use_best_mse: false, seed: 42 },
        inputs: { hidden: dirInput(hidden), reference: dirInput(fp[l]!) },
        files: {},
        modelDir,
        outDir,
        runtime: rt,
        progress: (done, total, message) => {
          if (process.stderr.isTTY) process.stderr.write(`\rrun ${r + 1}/${runs} block ${l}: ${done}/${total} ${message ?? ''}   `);
        },
        warn: (m) => console.error(m),
        signal: new AbortController().signal,
      })) as Record<string, Json>;
      perBlock[l]!.push({
        msPerIter: (res.ms_per_iter as number | null) ?? 0,
        ortShare: (res.ort_share as number | null) ?? 0,
        wallMs: performance.now() - b0,
        loss0: (res.loss_iter0 as number | null) ?? Number.NaN,
        best: (res.best_loss as number | null) ?? Number.NaN,
        bestIter: (res.best_iter as number | null) ?? -1,
      });
      if (hidden !== fp[0]) rmSync(hidden, { recursive: true, force: true });
      hidden = outDir;
    }
    totals.push(performance.now() - t0);
  }
  process.stderr.write('\n');
  await src.close();

  const e = (x: number): string => x.toExponential(2);
  console.log(`\nautoround W4A16 on ${modelDir}: ${n}×${seqlen} windows, batch ${batch}, ${iters} iters, ${rt.threads} threads, median of ${runs} run(s)\n`);
  console.log('| block | ms / iter | ORT share | block wall (s) | loss iter 0 | best loss (iter) |');
  console.log('|---:|---:|---:|---:|---:|---:|');
  perBlock.forEach((b, l) => {
    const last = b.at(-1)!;
    console.log(`| ${l} | ${median(b.map((x) => x.msPerIter)).toFixed(1)} | ${(100 * median(b.map((x) => x.ortShare))).toFixed(0)}% | ${(median(b.map((x) => x.wallMs)) / 1000).toFixed(1)} | ${e(last.loss0)} | ${e(last.best)} (${last.bestIter}) |`);
  });
  console.log(`| all | ${median(perBlock.flat().map((x) => x.msPerIter)).toFixed(1)} | | **${(median(totals) / 1000).toFixed(1)}** total | | |`);
} finally {
  await rt.close();
  rmSync(scratch, { recursive: true, force: true });
}
