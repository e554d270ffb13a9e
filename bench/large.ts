// A 1B model end to end: the synthetic 1B example model stored as bf16 (`quantforge example DIR --size 1b
// --dtype bf16`), quantized layer by layer with GPTQ W4A16, AWQ W4A16_ASYM and AutoRound W4A16 (few iterations)
// on a small calibration set from its calib.txt, each method in its own process: wall time per layer and the
// process's peak RSS, against the memory model's budget 2 × (one layer's weights in fp32 + one layer's
// calibration activations).
//
//   npx tsx bench/large.ts [--model DIR] [--samples 16] [--seq-len 512] [--layers 3]
//                          [--methods gptq,awq,autoround] [--autoround-iters 10]
//
// Without --model the model is written to $TMPDIR/qf-large-1b (kept: it is 2 GB and takes a while to write).

import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Json } from '../src/cache/key.js';
import { table } from './util.js';

const HERE = resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    child: { type: 'string' },
    model: { type: 'string' },
    samples: { type: 'string', default: '16' },
    'seq-len': { type: 'string', default: '512' },
    layers: { type: 'string', default: '3' },
    methods: { type: 'string', default: 'gptq,awq,autoround' },
    'autoround-iters': { type: 'string', default: '10' },
  },
});

interface LayerTime { layer: number; ms: number; rssMb: number; phases?: Json }
interface ChildOut { layers: LayerTime[]; peakMb: number; weightsMb: number; activationsMb: number; setupMs: number }

async function child(method: string, modelDir: string, samples: number, seqLen: number, layers: number, iters: number): Promise<ChildOut> {
  const { HfSource } = await import('../src/model/source.js');
  const { loadTokenizer } = await import('../src/model/tokenizer.js');
  const { cutWindows, datasetPieces } = await import('../src/model/windows.js');
  const { embed } = await import('../src/model/embed.js');
  const { tensor } = await import('../src/tensor.js');
  const { Runtime } = await import('../src/ort/session.js');
  const { presetScheme } = await import('../src/quant/scheme.js');
  const { writeHidden } = await import('../src/steps/activations.js');
  const { gptqStep } = await import('../src/steps/gptq.js');
  const { captureStep } = await import('../src/steps/capture.js');
  const { awqStep } = await import('../src/steps/awq.js');
  const { autoroundStep } = await import('../src/steps/autoround.js');
  const { propagateStep } = await import('../src/steps/propagate.js');
  const rt = new Runtime({ device: 'cpu' });
  const scratch = mkdtempSync(join(tmpdir(), 'qf-large-run-'));
  const t0 = performance.now();
  try {
    const src = await HfSource.open(modelDir);
    const cfg = src.config;
    const linears = src.arch.layer(cfg, 0).linears;
    const { ids } = loadTokenizer(modelDir).encodePrefix(datasetPieces(join(modelDir, 'calib.txt')), samples * seqLen);
    const windows = cutWindows(ids, seqLen, samples);
    const N = windows.dims[0] as number;
    let hidden = mkdtempSync(join(scratch, 'h-'));
    await writeHidden(hidden, tensor('float32', [N, seqLen, cfg.hiddenSize], embed(await src.tensor(src.arch.embedding), windows.data)));
    const weightsMb = (linears.reduce((s, l) => s + l.inFeatures * l.outFeatures, 0) + 2 * cfg.hiddenSize) * 4 / 2 ** 20;
    const activationsMb = (N * seqLen * cfg.hiddenSize * 4) / 2 ** 20;
    await src.close();
    const scheme = presetScheme(method === 'awq' ? 'W4A16_ASYM' : 'W4A16', ['Linear']);
    const modules = Object.fromEntries(linears.map((l) => [l.local, { weights: scheme.weights!, input_activations: null }]));
    const ctx = <P>(params: P, inputs: Record<string, string>) => ({
      id: `large/${method}`,
      params,
      inputs: Object.fromEntries(Object.entries(inputs).map(([role, dir]) => [role, { id: role, kind: role, dir, result: null }])),
      files: {},
      modelDir,
      outDir: mkdtempSync(join(scratch, 'o-')),
      runtime: rt,
      progress: () => {},
      warn: (m: string) => console.error(m),
      signal: new AbortController().signal,
    });
    const setupMs = performance.now() - t0;
    const out: LayerTime[] = [];
    let reference = hidden;
    for (let l = 0; l < layers; l++) {
      const l0 = performance.now();
      let phases: Json = null;
      let next: string;
      if (method === 'gptq') {
        const c = ctx({ layer: l, modules, block_size: 128, dampening_frac: 0.01, actorder: 'static' as const, offload_hessians: false }, { hidden });
        phases = ((await gptqStep.run(c)) as Record<string, Json>)['timing_ms'] ?? null;
        next = c.outDir;
      } else if (method === 'awq') {
        const mappings = src.arch.awqMappings(cfg, l).filter((m) => m.smooth !== 'self_attn.v_proj' || cfg.numKvHeads === cfg.numHeads).map((m) => ({ smooth: m.smooth, balance: [...m.balance] }));
        const cap = ctx({ layer: l, statistic: 'absmean' as const, modules: [...new Set(mappings.map((m) => m.balance[0]!))], next_hidden: true }, { hidden });
        await captureStep.run(cap);
        const a = ctx({ layer: l, modules, mappings, duo_scaling: 'both' as const, n_grid: 20 }, { hidden, stats: cap.outDir });
        await awqStep.run(a);
        next = cap.outDir;
      } else {
        const c = ctx({ layer: l, modules, iters, lr: 1 / iters, minmax_lr: 1 / iters, batch_size: 8, nsamples: null, enable_minmax_tuning: true, not_use_best_mse: false, seed: 42 }, { hidden, reference });
        const r = (await autoroundStep.run(c)) as Record<string, Json>;
        phases = { ms_per_iter: r['ms_per_iter'] ?? null };
        const p = ctx({ layer: l }, { hidden: reference });
        await propagateStep.run(p);
        reference = p.outDir;
        next = c.outDir;
      }
      if (hidden !== reference || method !== 'autoround') rmSync(hidden, { recursive: true, force: true });
      hidden = next;
      out.push({ layer: l, ms: performance.now() - l0, rssMb: process.memoryUsage().rss / 2 ** 20, phases });
      console.error(`${method} layer ${l}: ${((performance.now() - l0) / 1000).toFixed(1)} s, rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MB`);
    }
    return { layers: out, peakMb: process.resourceUsage().maxRSS / 1024, weightsMb, activationsMb, setupMs };
  } finally {
    await rt.close();
    rmSync(scratch, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const [samples, seqLen, layers, iters] = [Number(values.samples), Number(values['seq-len']), Number(values.layers), Number(values['autoround-iters'])];
  if (values.child) {
    const { method, model } = JSON.parse(values.child) as { method: string; model: string };
    console.log(JSON.stringify(await child(method, model, samples, seqLen, layers, iters)));
    return;
  }
  const model = values.model ?? join(tmpdir(), 'qf-large-1b');
  if (!existsSync(join(model, 'model.safetensors')) && !existsSync(join(model, 'model.safetensors.index.json'))) {
    console.error(`writing the 1B bf16 example model to ${model} ...`);
    const t0 = performance.now();
    execFileSync(process.execPath, ['--import', 'tsx', join(HERE, 'src/cli.ts'), 'example', model, '--size', '1b', '--dtype', 'bf16', '--force'], { stdio: 'inherit' });
    console.error(`written in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  const load0 = loadavg()[0]!;
  const rows: string[][] = [];
  const per: string[] = [];
  for (const method of values.methods.split(',')) {
    const args = ['--samples', String(samples), '--seq-len', String(seqLen), '--layers', String(layers), '--autoround-iters', String(iters), '--child', JSON.stringify({ method, model })];
    const outText = execFileSync(process.execPath, ['--import', 'tsx', join(HERE, 'bench/large.ts'), ...args], { cwd: HERE, encoding: 'utf8', maxBuffer: 2 ** 26, stdio: ['ignore', 'pipe', 'inherit'] });
    const r = JSON.parse(outText.trim().split('\n').pop()!) as ChildOut;
    const budget = 2 * (r.weightsMb + r.activationsMb);
    const ms = r.layers.map((l) => l.ms).sort((a, b) => a - b);
    const median = ms[Math.floor(ms.length / 2)]!;
    rows.push([method === 'autoround' ? `autoround (${iters} iters)` : method, ...r.layers.map((l) => (l.ms / 1000).toFixed(1)), (median / 1000).toFixed(1), ((median * 22) / 60000).toFixed(1), r.peakMb.toFixed(0), budget.toFixed(0), r.peakMb <= budget ? 'yes' : '**no**']);
    per.push(`${method}: ${JSON.stringify(r.layers.map((l) => l.phases))}`);
    console.error(`one layer's weights in fp32 ${r.weightsMb.toFixed(0)} MB, one layer's calibration activations ${r.activationsMb.toFixed(0)} MB`);
  }
  const head = ['method', ...Array.from({ length: layers }, (_, l) => `layer ${l} s`), 'median s/layer', '22 layers, min', 'peak RSS MB', 'budget MB', 'within'];
  console.log(table(head, rows));
  console.log(`\n${samples} × ${seqLen} calibration tokens; load average ${load0.toFixed(2)} at start, ${loadavg()[0]!.toFixed(2)} at end`);
  for (const p of per) console.log(p);
}

await main();
