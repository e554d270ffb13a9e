// AWQ benchmark: wall time of the awq step per decoder layer (grid search over every mapping, fold, quantize),
// the share spent inside onnxruntime (Kernel.busyMs), and the split per mapping, median of several runs. The
// capture step that feeds it is timed once per layer. Calibration windows come from a text file (default: the
// model directory's calib.txt); without a model directory the tiny example model is generated into a temp dir.
//
//   npx tsx bench/awq.ts [modelDir] [--runs 3] [--layers 2] [--samples 16] [--seq-len 64] [--scheme W4A16_ASYM]
//                        [--duo true|false|both] [--n-grid 20] [--calib file] [--threads n] [--profile DIR]
//
// --profile DIR: onnxruntime's profiler on every session, traces written to DIR when the run ends (read them with
// `npx tsx bench/ort-profile.ts DIR`: time per session and per op type).

import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { DuoScaling } from '../src/algo/awq.js';
import { presetScheme, type QuantArgs } from '../src/quant/scheme.js';
import type { Mapping } from '../src/model/arch.js';
import { embed } from '../src/model/embed.js';
import { writeExampleModel } from '../src/steps/example-model.js';
import { runDecoderLayer } from '../src/graphs/layer-runner.js';
import { HfSource } from '../src/model/source.js';
import { loadTokenizer } from '../src/model/tokenizer.js';
import { cutWindows, readDatasetText } from '../src/model/windows.js';
import { Kernel, Runtime } from '../src/ort/session.js';
import { writeHidden } from '../src/steps/activations.js';
import { awqStep, type AwqParams } from '../src/steps/awq.js';
import { captureStep, type CaptureParams } from '../src/steps/capture.js';
import type { StepContext } from '../src/steps/types.js';
import { tensor, type Tensor } from '../src/tensor.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    runs: { type: 'string', default: '3' },
    layers: { type: 'string', default: '2' },
    samples: { type: 'string', default: '16' },
    'seq-len': { type: 'string', default: '64' },
    scheme: { type: 'string', default: 'W4A16_ASYM' },
    duo: { type: 'string', default: 'true' },
    'n-grid': { type: 'string', default: '20' },
    calib: { type: 'string' },
    threads: { type: 'string' },
    profile: { type: 'string' },
  },
});

const rt = new Runtime({ device: 'cpu', ...(values.threads ? { threads: Number(values.threads) } : {}), ...(values.profile ? { profileDir: values.profile } : {}) });
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const fmt = (ms: number): string => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`);
const duo: DuoScaling = values.duo === 'both' ? 'both' : values.duo === 'true';
const scratch = mkdtempSync(join(tmpdir(), 'qf-bench-awq-'));

function context<P>(modelDir: string, params: P, inputs: Record<string, string>, progress: StepContext<P>['progress'] = () => {}): StepContext<P> {
  const outDir = mkdtempSync(join(scratch, 'step-'));
  const ins: StepContext<P>['inputs'] = {};
  for (const [role, dir] of Object.entries(inputs)) ins[role] = { id: role, kind: role, dir, result: null };
  return { id: 'bench', params, inputs: ins, files: {}, modelDir, outDir, runtime: rt, progress, warn: () => {}, signal: new AbortController().signal };
}

/** the default mappings the planner would pass: v → o only when the shapes allow it (not under GQA) */
function mappings(src: HfSource): Mapping[] {
  const linears = src.arch.layer(src.config, 0).linears;
  const out = (l: string) => linears.find((s) => s.local === l)?.outFeatures;
  const inn = (l: string) => linears.find((s) => s.local === l)?.inFeatures;
  return src.arch.awqMappings(src.config, 0)
    .filter((m) => out(m.smooth) === undefined || m.balance.every((b) => inn(b) === out(m.smooth)))
    .map((m) => ({ smooth: m.smooth, balance: [...m.balance] }));
}

async function main(): Promise<void> {
  let modelDir = positionals[0];
  if (!modelDir) {
    modelDir = join(scratch, 'model');
    console.error('generating the tiny example model ...');
    await writeExampleModel(rt, modelDir, { size: 'tiny', seed: 0, dtype: 'f32' });
  }
  const calib = values.calib ?? join(modelDir, 'calib.txt');
  if (!existsSync(calib)) throw new Error(`no calibration text at ${calib}; pass --calib`);
  const src = await HfSource.open(modelDir);
  const [samples, T, runs] = [Number(values.samples), Number(values['seq-len']), Number(values.runs)];
  const ids = cutWindows(loadTokenizer(modelDir).encode(readDatasetText(calib)), T, samples);
  const n = ids.dims[0] as number;
  const cfg = src.config;
  const linears = src.arch.layer(cfg, 0).linears;
  const maps = mappings(src);
  const weights = presetScheme(values.scheme!, ['Linear']).weights as QuantArgs;
  const modules = Object.fromEntries(linears.map((l) => [l.local, { weights, input_activations: null }]));
  let hidden: Tensor<'float32'> = tensor('float32', [n, T, cfg.hiddenSize], embed(await src.tensor(src.arch.embedding), ids.data));
  const layers = Math.min(Number(values.layers), cfg.numLayers);
  const rows: string[] = [];
  for (let l = 0; l < layers; l++) {
    const hiddenDir = mkdtempSync(join(scratch, 'hidden-'));
    await writeHidden(hiddenDir, hidden);
    const cap = context<CaptureParams>(modelDir, { layer: l, statistic: 'absmean', modules: maps.map((m) => m.balance[0]!) }, { hidden: hiddenDir });
    const c0 = performance.now();
    await captureStep.run(cap);
    const captureMs = performance.now() - c0;
    const totals: number[] = [];
    const ort: number[] = [];
    const perMapping: number[][] = maps.map(() => []);
    const quantize: number[] = [];
    for (let r = 0; r < runs; r++) {
      let mark = performance.now();
      const split: number[] = [];
      const progress = (): void => {
        const now = performance.now();
        split.push(now - mark);
        mark = now;
      };
      const params: AwqParams = { layer: l, modules, mappings: maps, duo_scaling: duo, n_grid: Number(values['n-grid']) };
      const ctx = context(modelDir, params, { stats: cap.outDir, hidden: hiddenDir }, progress);
      const busy = Kernel.busyMs;
      const t0 = performance.now();
      mark = t0;
      await awqStep.run(ctx);
      totals.push(performance.now() - t0);
      ort.push(Kernel.busyMs - busy);
      maps.forEach((_, i) => perMapping[i]!.push(split[i] ?? 0));
      quantize.push(split[maps.length] ?? 0);
    }
    const share = median(ort.map((o, i) => o / (totals[i] as number)));
    rows.push(`| ${l} | ${fmt(captureMs)} | **${fmt(median(totals))}** | ${(100 * share).toFixed(0)}% | ${perMapping.map((p) => fmt(median(p))).join(' | ')} | ${fmt(median(quantize))} |`);
    hidden = (await runDecoderLayer(rt, cfg, src.arch.layer(cfg, l), await src.layer(l), hidden))['out'] as Tensor<'float32'>;
  }
  const grid = duo === true ? Number(values['n-grid']) + 1 : duo === 'both' ? 2 * Math.max(1, Math.floor(Number(values['n-grid']) / 2)) : Number(values['n-grid']);
  console.log(`\n### AWQ step per layer: ${positionals[0] ?? 'tiny example model'} (H ${cfg.hiddenSize}, I ${cfg.intermediateSize}), ${values.scheme}, duo_scaling ${values.duo}, ${grid} candidates, ${n}×${T} tokens, ${rt.threads} threads, median of ${runs}\n`);
  console.log(`| layer | capture | awq step | inside onnxruntime | ${maps.map((m) => `${m.smooth} → ${m.balance.map((b) => b.split('.').pop()).join('/')}`).join(' | ')} | quantize + write |`);
  console.log(`|---|---|---|---|${maps.map(() => '---|').join('')}---|`);
  for (const r of rows) console.log(r);
  await src.close();
}

try {
  await main();
} finally {
  await rt.close();
  rmSync(scratch, { recursive: true, force: true });
}
