// AWQ memory over time on one decoder layer of a large model: the awq step of layer 0 (after its capture) with
// a thread sampling VmRSS every 20 ms, printing the rise above the step's starting RSS with the mapping then
// being searched, so a peak can be tied to a phase (a mapping's candidate weights, its loss calls, the quantize).
// --linear: only the last mapping whose parent is a Linear (up → down), its two phases apart: the input's XᵀX
// (a layer forward per batch, float64 sums) and the candidates' Gram losses.
//
//   npx tsx bench/awq-memory.ts MODEL_DIR [--samples 2] [--seq-len 512] [--linear]

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { embed } from '../src/model/embed.js';
import { HfSource } from '../src/model/source.js';
import { loadTokenizer } from '../src/model/tokenizer.js';
import { cutWindows, datasetPieces } from '../src/model/windows.js';
import { Runtime } from '../src/ort/session.js';
import { presetScheme } from '../src/quant/scheme.js';
import { writeHidden } from '../src/steps/activations.js';
import { awqStep, type AwqParams } from '../src/steps/awq.js';
import { gramOfInput, gramSums, mappingSearch } from '../src/steps/awq-search.js';
import { actQuantOf, openLayerInput } from '../src/steps/layer-state.js';
import { readHidden } from '../src/steps/activations.js';
import { awqGrid, candidateMatrix } from '../src/algo/awq.js';
import { captureStep } from '../src/steps/capture.js';
import { tensor } from '../src/tensor.js';
import { rssMb, rssSampler } from './util.js';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { samples: { type: 'string', default: '2' }, 'seq-len': { type: 'string', default: '512' }, linear: { type: 'boolean', default: false } } });
const modelDir = positionals[0];
if (!modelDir) throw new Error('usage: npx tsx bench/awq-memory.ts MODEL_DIR [--samples 2] [--seq-len 512]');

const rt = new Runtime({ device: 'cpu' });
const scratch = mkdtempSync(join(tmpdir(), 'qf-awq-memory-'));
const ctx = <P>(params: P, inputs: Record<string, string>, progress: (d: number, t: number, label?: string) => void = () => {}) => ({
  id: 'awq-memory', params, files: {}, modelDir, runtime: rt, progress, warn: (m: string) => console.error(m),
  inputs: Object.fromEntries(Object.entries(inputs).map(([role, dir]) => [role, { id: role, kind: role, dir, result: null }])),
  outDir: mkdtempSync(join(scratch, 'o-')), signal: new AbortController().signal,
});
const smp = rssSampler(20);
try {
  const [samples, seqLen] = [Number(values.samples), Number(values['seq-len'])];
  const src = await HfSource.open(modelDir);
  const cfg = src.config;
  const linears = src.arch.layer(cfg, 0).linears;
  const { ids } = loadTokenizer(modelDir).encodePrefix(datasetPieces(join(modelDir, 'calib.txt')), samples * seqLen);
  const windows = cutWindows(ids, seqLen, samples);
  const hidden = mkdtempSync(join(scratch, 'h-'));
  await writeHidden(hidden, tensor('float32', [windows.dims[0] as number, seqLen, cfg.hiddenSize], embed(await src.tensor(src.arch.embedding), windows.data)));
  const mappings = src.arch.awqMappings(cfg, 0).filter((m) => m.smooth !== 'self_attn.v_proj' || cfg.numKvHeads === cfg.numHeads).map((m) => ({ smooth: m.smooth, balance: [...m.balance] }));
  await src.close();
  const weights = presetScheme('W4A16_ASYM', ['Linear']).weights!;
  const modules = Object.fromEntries(linears.map((l) => [l.local, { weights, input_activations: null }]));
  const cap = ctx({ layer: 0, statistic: 'absmean' as const, modules: [...new Set(mappings.map((m) => m.balance[0]!))] }, { hidden });
  await captureStep.run(cap);
  if (values.linear) {
    const m = mappings[mappings.length - 1]!;
    const c = ctx({ layer: 0 }, { hidden });
    const { src: s2, state } = await openLayerInput(c, 0);
    const h = await readHidden(hidden);
    const search = (await mappingSearch({ rt, layer: 0, cfg, layerSpec: s2.arch.layer(cfg, 0), state, stats: cap.outDir, modules, duo: 'both', actQuant: actQuantOf(state.quant) }, m))!;
    const base = rssMb();
    smp.take();
    const t0 = performance.now();
    // as the step: the batches' Grams written into one buffer, which then holds the float32 G
    const gram = await gramOfInput(search.problem, h);
    console.log(`${((performance.now() - t0) / 1000).toFixed(1)} s  ${m.smooth} → ${m.balance.join('/')} XᵀX (${windows.dims[0]} × ${seqLen} tokens): peak +${(smp.take() - base).toFixed(0)} MiB over ${base.toFixed(0)} MiB`);
    const candidates = awqGrid('both', 20);
    const scales = candidateMatrix({ xMean: search.xMean, wMean: search.wMean, candidates });
    await gramSums(search.problem, gram, scales, candidates.length);
    console.log(`${((performance.now() - t0) / 1000).toFixed(1)} s  Gram losses of ${candidates.length} candidates: peak +${(smp.take() - base).toFixed(0)} MiB over ${base.toFixed(0)} MiB`);
    await s2.close();
  } else await wholeStep(mappings, modules, cap.outDir, hidden, `${windows.dims[0]} × ${seqLen}`);
} finally {
  await smp.stop();
  await rt.close();
  rmSync(scratch, { recursive: true, force: true });
}

/** the awq step of layer 0, the peak above its starting RSS printed per mapping */
async function wholeStep(mappings: { smooth: string; balance: string[] }[], modules: Record<string, unknown>, stats: string, hidden: string, tokens: string): Promise<void> {
  const base = rssMb();
  smp.take();
  const t0 = performance.now();
  let phase = mappings[0]!.smooth;
  const progress = (done: number, total: number, label?: string): void => {
    console.log(`${((performance.now() - t0) / 1000).toFixed(1)} s  ${phase}: peak +${(smp.take() - base).toFixed(0)} MiB over the step's start (${base.toFixed(0)} MiB)`);
    phase = done < mappings.length ? mappings[done]!.smooth : `quantize (after ${label ?? ''})`;
  };
  await awqStep.run(ctx({ layer: 0, modules: modules as AwqParams['modules'], mappings, duo_scaling: 'both' as const, n_grid: 20 }, { hidden, stats }, progress));
  console.log(`${((performance.now() - t0) / 1000).toFixed(1)} s  end: peak +${(smp.take() - base).toFixed(0)} MiB; ${tokens} tokens`);
}
