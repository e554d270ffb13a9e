// A 1B model end to end: the synthetic 1B example model stored as bf16 (`quantforge example DIR --size 1b
// --dtype bf16`), quantized layer by layer with GPTQ W4A16, AWQ W4A16_ASYM and AutoRound W4A16 (few iterations)
// on a small calibration set from its calib.txt, each method in its own process, the steps chained as the
// stages plan them (gptq: gptq.l → gptq.l+1; awq: capture.l with next_hidden, awq.l; autoround: propagate.l on
// the full-precision chain gives autoround.l its `target`). Per layer: wall and CPU time (user + system, all
// threads), RSS when the layer starts and its peak during the layer (VmHWM reset per layer through
// /proc/self/clear_refs, so the model's tokenization and embedding do not count), and when in the layer the
// peak came (a worker thread samples VmRSS every 10 ms: onnxruntime runs block the main thread). The budget
// is the memory model's 2 × (one layer's weights in fp32 + one layer's calibration activations), the
// activations being the layer's input hidden states [samples, seq_len, hidden] in fp32.
//
//   npx tsx bench/large.ts [--model DIR] [--samples 16] [--seq-len 512] [--layers 3]
//                          [--methods gptq,awq,autoround] [--autoround-iters 10]
//
// Without --model the model is written to $TMPDIR/qf-large-1b (kept: it is 2 GB and takes a while to write).

import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
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

interface LayerTime { layer: number; ms: number; cpuMs: number; startMb: number; peakMb: number; peakAtMs: number; phases?: Json }
interface ChildOut { layers: LayerTime[]; weights: [string, number][]; norms: number; activations: number[]; numLayers: number; setupMs: number; setupPeakMb: number }

const MB = 2 ** 20;
/** a field of /proc/self/status in KiB: VmRSS now, VmHWM the peak since the last reset */
const vmKb = (field: 'VmRSS' | 'VmHWM'): number => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0);

/** a thread that keeps the highest VmRSS (KiB) and its time (ms after `base`) in shared memory; reset by zeroing slot 0 */
function rssSampler(): { reset(): void; peak(): { kb: number; at: number }; stop(): Promise<number> } {
  const shared = new Int32Array(new SharedArrayBuffer(16));
  const code = `
    const { workerData } = require('node:worker_threads');
    const { readFileSync } = require('node:fs');
    const s = new Int32Array(workerData.buf);
    while (Atomics.load(s, 2) === 0) {
      const kb = Number(/VmRSS:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
      if (kb > Atomics.load(s, 0)) { Atomics.store(s, 0, kb); Atomics.store(s, 1, Date.now() - workerData.base); }
      Atomics.wait(s, 3, 0, 10);
    }`;
  const base = Date.now();
  const w = new Worker(code, { eval: true, workerData: { buf: shared.buffer, base } });
  let start = 0;
  return {
    reset: () => { start = Date.now() - base; Atomics.store(shared, 0, 0); },
    peak: () => ({ kb: Atomics.load(shared, 0), at: Atomics.load(shared, 1) - start }),
    stop: () => { Atomics.store(shared, 2, 1); return w.terminate(); },
  };
}

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
  const sampler = rssSampler();
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
      // phase marks: RSS when the step reports progress (capture batches, each module quantized, propagate)
      progress: (_done: number, _total: number, message?: string) => mark(message ?? ''),
      warn: (m: string) => console.error(m),
      signal: new AbortController().signal,
    });
    const setupMs = performance.now() - t0;
    const setupPeakMb = vmKb('VmHWM') / 1024;
    const out: LayerTime[] = [];
    let marks: { at: number; mb: number; peakMb: number; what: string }[] = [];
    let layerStart = 0;
    let layerPeak = { kb: 0, at: 0 };
    let phaseStart = 0;
    // each mark keeps the highest RSS the sampler saw since the previous one (the phase's peak)
    const mark = (what: string): void => {
      const p = sampler.peak();
      if (p.kb > layerPeak.kb) layerPeak = { kb: p.kb, at: p.at + phaseStart - layerStart };
      sampler.reset();
      phaseStart = Date.now();
      const last = marks[marks.length - 1];
      const m = { at: Date.now() - layerStart, mb: vmKb('VmRSS') / 1024, peakMb: p.kb / 1024, what };
      if (last?.what === what) marks[marks.length - 1] = { ...m, peakMb: Math.max(m.peakMb, last.peakMb) };
      else marks.push(m);
    };
    let reference = hidden;
    for (let l = 0; l < layers; l++) {
      writeFileSync('/proc/self/clear_refs', '5');
      sampler.reset();
      [marks, layerStart, layerPeak] = [[], Date.now(), { kb: 0, at: 0 }];
      phaseStart = layerStart;
      const [l0, cpu0, startMb] = [performance.now(), process.cpuUsage(), vmKb('VmRSS') / 1024];
      let phases: Json = null;
      let next: string;
      if (method === 'gptq') {
        const c = ctx({ layer: l, modules, block_size: 128, dampening_frac: 0.01, actorder: 'static' as const, offload_hessians: false }, { hidden });
        phases = ((await gptqStep.run(c)) as Record<string, Json>)['timing_ms'] ?? null;
        next = c.outDir;
      } else if (method === 'awq') {
        // the stage's mappings: v → o only where v's outputs are o's inputs (not under GQA; stages/mappings.ts shapesAllow)
        const mappings = src.arch.awqMappings(cfg, l).filter((m) => m.smooth !== 'self_attn.v_proj' || cfg.numKvHeads === cfg.numHeads).map((m) => ({ smooth: m.smooth, balance: [...m.balance] }));
        const cap = ctx({ layer: l, statistic: 'absmean' as const, modules: [...new Set(mappings.map((m) => m.balance[0]!))], next_hidden: true }, { hidden });
        const c0 = performance.now();
        await captureStep.run(cap);
        const a0 = performance.now();
        await awqStep.run(ctx({ layer: l, modules, mappings, duo_scaling: 'both' as const, n_grid: 20 }, { hidden, stats: cap.outDir }));
        phases = { capture: Math.round(a0 - c0), awq: Math.round(performance.now() - a0) };
        next = cap.outDir;
      } else {
        // the full-precision chain's next link first: it is the block's target (the plan's input `target`)
        const p = ctx({ layer: l }, { hidden: reference });
        const p0 = performance.now();
        await propagateStep.run(p);
        const a0 = performance.now();
        const c = ctx({ layer: l, modules, iters, lr: 1 / iters, minmax_lr: 1 / iters, batch_size: 8, nsamples: null, enable_minmax_tuning: true, not_use_best_mse: false, seed: 42 }, { hidden, reference, target: p.outDir });
        const r = (await autoroundStep.run(c)) as Record<string, Json>;
        phases = { propagate: Math.round(a0 - p0), autoround: Math.round(performance.now() - a0), ms_per_iter: Math.round(Number(r['ms_per_iter'] ?? 0)) };
        if (reference !== hidden) rmSync(reference, { recursive: true, force: true });
        reference = p.outDir;
        next = c.outDir;
      }
      if (method !== 'autoround' || hidden !== reference) rmSync(hidden, { recursive: true, force: true });
      hidden = next;
      const cpu = process.cpuUsage(cpu0);
      mark('end');
      const peak = layerPeak;
      const row = { layer: l, ms: performance.now() - l0, cpuMs: (cpu.user + cpu.system) / 1000, startMb, peakMb: vmKb('VmHWM') / 1024, peakAtMs: peak.at, phases };
      out.push(row);
      console.error(`${method} layer ${l}: ${(row.ms / 1000).toFixed(1)} s wall, ${(row.cpuMs / 1000).toFixed(1)} s CPU, rss ${startMb.toFixed(0)} → peak ${row.peakMb.toFixed(0)} MiB at ${(peak.at / 1000).toFixed(1)} s, ${JSON.stringify(phases)}`);
      console.error(`  phases (s at its end, RSS then MiB, the phase's peak MiB, what ended): ${marks.map((m) => `${(m.at / 1000).toFixed(1)} ${m.mb.toFixed(0)} ${m.peakMb.toFixed(0)} ${m.what}`).join(' | ')}`);
    }
    const weights = linears.map((lin) => [lin.local, lin.inFeatures * lin.outFeatures] as [string, number]);
    return { layers: out, weights, norms: 2 * cfg.hiddenSize, activations: [N, seqLen, cfg.hiddenSize], numLayers: cfg.numLayers, setupMs, setupPeakMb };
  } finally {
    await sampler.stop();
    await rt.close();
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** the budget 2 × (weights + activations) of one layer, in MiB, and its arithmetic as text */
function budget(r: ChildOut): { mb: number; text: string } {
  const values = r.weights.reduce((s, [, n]) => s + n, 0) + r.norms;
  const weightsMb = (values * 4) / MB;
  const actMb = (r.activations.reduce((a, b) => a * b, 1) * 4) / MB;
  const parts = r.weights.map(([name, n]) => `${name.split('.').pop()} ${(n / 1e6).toFixed(3)}M`).join(' + ');
  const text = `one layer's weights: ${parts} + norms ${r.norms} = ${(values / 1e6).toFixed(2)}M values × 4 B = ${weightsMb.toFixed(1)} MiB; ` +
    `calibration activations ${r.activations.join(' × ')} × 4 B = ${actMb.toFixed(1)} MiB; budget 2 × (${weightsMb.toFixed(1)} + ${actMb.toFixed(1)}) = ${(2 * (weightsMb + actMb)).toFixed(1)} MiB`;
  return { mb: 2 * (weightsMb + actMb), text };
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
  const notes: string[] = [];
  for (const method of values.methods.split(',')) {
    const args = ['--samples', String(samples), '--seq-len', String(seqLen), '--layers', String(layers), '--autoround-iters', String(iters), '--child', JSON.stringify({ method, model })];
    const outText = execFileSync(process.execPath, ['--import', 'tsx', join(HERE, 'bench/large.ts'), ...args], { cwd: HERE, encoding: 'utf8', maxBuffer: 2 ** 26, stdio: ['ignore', 'pipe', 'inherit'] });
    const r = JSON.parse(outText.trim().split('\n').pop()!) as ChildOut;
    const b = budget(r);
    const med = (k: 'ms' | 'cpuMs'): number => r.layers.map((l) => l[k]).sort((x, y) => x - y)[Math.floor(r.layers.length / 2)]!;
    const peak = Math.max(...r.layers.map((l) => l.peakMb));
    rows.push([
      method === 'autoround' ? `autoround (${iters} iters)` : method,
      r.layers.map((l) => (l.ms / 1000).toFixed(1)).join(' / '),
      (med('ms') / 1000).toFixed(1),
      (med('cpuMs') / 1000).toFixed(1),
      ((med('ms') * r.numLayers) / 60000).toFixed(1),
      r.layers.map((l) => l.startMb.toFixed(0)).join(' / '),
      peak.toFixed(0),
      b.mb.toFixed(0),
      peak <= b.mb ? 'yes' : '**no**',
    ]);
    notes.push(`${method}: setup (tokenize, embed) ${(r.setupMs / 1000).toFixed(1)} s, peak ${r.setupPeakMb.toFixed(0)} MiB; per layer ${JSON.stringify(r.layers.map((l) => ({ peakAtS: +(l.peakAtMs / 1000).toFixed(1), ...(l.phases as object) })))}`);
    if (notes.length === 1) notes.unshift(b.text);
  }
  const head = ['method', 'wall s per layer', 'median s/layer', 'median CPU s/layer', 'all layers at the median, min', 'RSS at layer start MiB', 'peak RSS in a layer MiB', 'budget MiB', 'within'];
  console.log(table(head, rows));
  console.log(`\n${samples} × ${seqLen} calibration tokens; load average ${load0.toFixed(2)} at start, ${loadavg()[0]!.toFixed(2)} at end`);
  for (const n of notes) console.log(n);
}

await main();
