// Execution providers compared on the example model: for a GPU machine (real CUDA / Vulkan) as much as for CI's
// software Vulkan device. Sections (all by default):
//   forward   ms per decoder layer forward (layer 0, [samples, seq-len]) and ms per full forward of an RTN
//             int4 ONNX export (MatMulNBits), with the output and logits differences against cpu
//   methods   per method (gptq, awq, smoothquant + rtn W8A8, autoround, rtn): ms per layer of its steps,
//             each provider with its own step cache
//   resident  one AutoRound block iteration with the block's constant tensors fed from the host each time
//             vs uploaded once and kept on the device (Runtime.upload; webgpu only)
//   parity    every kernel the method recipes reach, replayed on each GPU provider: differences, fallbacks
//
//   npx tsx bench/device.ts [--providers cpu,webgpu,cuda] [--sections forward,methods] [--size tiny|100m]
//                           [--samples 8] [--seq-len 64] [--iters 4] [--runs 3]
//
// Providers default to cpu plus every GPU provider that runs here (src/ort/probe.ts). The first run of a
// kernel on a GPU provider compiles its shaders, so every timing is a median after one warm-up.

import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { RunEvent } from '../src/exec/events.js';
import { embed } from '../src/model/embed.js';
import { runDecoderLayer } from '../src/graphs/layer-runner.js';
import { OnnxModel } from '../src/graphs/onnx-model.js';
import { readModelConfig } from '../src/model/config.js';
import { HfSource } from '../src/model/source.js';
import { loadTokenizer } from '../src/model/tokenizer.js';
import { cutWindows, readDatasetText } from '../src/model/windows.js';
import { checkProvider } from '../src/ort/probe.js';
import { Runtime, PROVIDERS, type Provider, type Resident } from '../src/ort/session.js';
import { tensor, type Tensor } from '../src/tensor.js';
import { family, parityTable, RecordingRuntime, replay, runRecipeText } from '../test/ort/device-parity.js';
import { parityRecipes } from '../test/ort/device-recipes.js';
import { median, table } from './util.js';

const { values } = parseArgs({
  options: {
    providers: { type: 'string' },
    sections: { type: 'string', default: 'forward,methods,resident,parity' },
    size: { type: 'string', default: 'tiny' },
    samples: { type: 'string', default: '8' },
    'seq-len': { type: 'string', default: '64' },
    iters: { type: 'string', default: '4' },
    runs: { type: 'string', default: '3' },
  },
});
const size = values.size as 'tiny' | '100m' | '1b';
const samples = Number(values.samples);
const seqLen = Number(values['seq-len']);
const runs = Number(values.runs);
const sections = new Set(values.sections!.split(','));
const providers: Provider[] = values.providers
  ? (values.providers.split(',') as Provider[])
  : PROVIDERS.filter((p) => {
      const c = checkProvider(p);
      if (!c.ok) console.log(`${p}: not available (${c.detail})`);
      return c.ok;
    });
const gpus = providers.filter((p) => p !== 'cpu');
const root = mkdtempSync(join(tmpdir(), 'qf-bench-device-'));

async function timed(f: () => Promise<unknown>): Promise<number> {
  await f();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await f();
    times.push(performance.now() - t0);
  }
  return median(times);
}

function diff(a: Tensor, b: Tensor): { abs: number; rel: number } {
  let abs = 0;
  let scale = 0;
  for (let i = 0; i < a.data.length; i++) {
    abs = Math.max(abs, Math.abs(Number(a.data[i]) - Number(b.data[i])));
    scale = Math.max(scale, Math.abs(Number(a.data[i])));
  }
  return { abs, rel: abs / (scale || 1) };
}

/** the example model and an RTN int4 ONNX export of it, built once on the CPU */
async function models(): Promise<{ modelDir: string; onnxDir: string }> {
  const rt = new Runtime({ device: 'cpu' });
  const out = join(root, 'export');
  const recipe = `quantforge: 1\nmodel: { example: ${size}, seed: 0 }\nstages:\n  - { kind: rtn, scheme: W4A16, targets: [Linear], ignore: [lm_head] }\noutputs:\n  - { format: onnx, path: ${out}, accuracy_level: 0 }\n`;
  const events = await runRecipeText(rt, recipe, root, join(root, 'cache-export'));
  await rt.close();
  const done = events.find((e): e is Extract<RunEvent, { event: 'output' }> => e.event === 'output' && e.format === 'onnx');
  const model = events.find((e) => e.event === 'step-done' && e.kind === 'example-model');
  if (!done || !model) throw new Error('no export');
  const base = join(root, 'cache-export', 'example-model');
  return { modelDir: join(base, readdirSync(base)[0]!), onnxDir: out };
}

async function forwardSection(): Promise<void> {
  const { modelDir, onnxDir } = await models();
  const src = await HfSource.open(modelDir);
  const cfg = readModelConfig(modelDir);
  const ids = cutWindows(loadTokenizer(modelDir).encode(readDatasetText(join(modelDir, 'calib.txt'))), seqLen, samples);
  const x = tensor('float32', [ids.dims[0]!, seqLen, cfg.hiddenSize], embed(await src.tensor(src.arch.embedding), ids.data));
  const weights = await src.layer(0);
  const linears = src.arch.layer(cfg, 0);
  const window = [Array.from(ids.data.subarray(0, seqLen))];
  const empty = (): Record<string, Tensor> => {
    const feeds: Record<string, Tensor> = {};
    for (let l = 0; l < cfg.numLayers; l++) {
      feeds[`past_key_values.${l}.key`] = tensor('float32', [1, cfg.numKvHeads, 0, cfg.headDim]);
      feeds[`past_key_values.${l}.value`] = tensor('float32', [1, cfg.numKvHeads, 0, cfg.headDim]);
    }
    return feeds;
  };
  const rows: string[][] = [];
  let ref: { layer: Tensor; logits: Tensor } | undefined;
  for (const p of providers) {
    const rt = new Runtime({ device: p });
    const t0 = performance.now();
    await runDecoderLayer(rt, cfg, linears, weights, x);
    const firstMs = performance.now() - t0;
    const layerMs = await timed(() => runDecoderLayer(rt, cfg, linears, weights, x));
    const layer = (await runDecoderLayer(rt, cfg, linears, weights, x))['out']!;
    const onnx = await OnnxModel.open(rt, onnxDir, cfg);
    const fwdMs = await timed(() => onnx.forward(window, 0, empty()));
    const logits = (await onnx.forward(window, 0, empty())).logits;
    await onnx.close();
    await rt.close();
    ref ??= { layer, logits };
    const dl = diff(ref.layer, layer);
    const dg = diff(ref.logits, logits);
    rows.push([p, firstMs.toFixed(0), layerMs.toFixed(1), fwdMs.toFixed(1), dl.rel.toExponential(1), dg.abs.toExponential(1)]);
  }
  await src.close();
  console.log(`\n### forward: ${size} example model, layer 0 on [${samples}, ${seqLen}]; int4 RTN ONNX export on 1 × ${seqLen} tokens\n`);
  console.log(table(['provider', 'first layer call ms (session + shaders)', 'ms / layer forward', 'ms / ONNX forward', 'layer max rel diff vs cpu', 'logits max abs diff vs cpu'], rows));
}

const METHOD_STEPS: Record<string, string[]> = {
  gptq: ['gptq'],
  awq: ['capture', 'awq'],
  smoothquant: ['capture', 'smoothquant', 'propagate', 'rtn'],
  autoround: ['autoround'],
};

async function methodsSection(): Promise<void> {
  const recipes = parityRecipes(join(root, 'methods-out'), { samples, seqLen, windows: 2, iters: Number(values.iters), nGrid: 4, size });
  const rows: string[][] = [];
  const cells = new Map<string, Map<Provider, string>>();
  for (const p of providers) {
    const rt = new Runtime({ device: p });
    const cache = join(root, `cache-${p}`);
    for (const [method, yaml] of Object.entries(recipes)) {
      const events = await runRecipeText(rt, yaml, root, cache, p);
      for (const kind of METHOD_STEPS[method]!) {
        const done = events.filter((e): e is Extract<RunEvent, { event: 'step-done' }> => e.event === 'step-done' && e.kind === kind && e.result === 'ran');
        if (done.length === 0) continue;
        const key = `${method} | ${kind}`;
        if (!cells.has(key)) cells.set(key, new Map());
        cells.get(key)!.set(p, `${median(done.map((e) => e.ms)).toFixed(0)} (${done.length})`);
      }
    }
    await rt.close();
  }
  for (const [key, byProvider] of cells) rows.push([...key.split(' | '), ...providers.map((p) => byProvider.get(p) ?? '—')]);
  console.log(`\n### methods: median ms per step (steps that ran), ${size} example model, ${samples} × ${seqLen} calibration tokens\n`);
  console.log(table(['method', 'step', ...providers.map((p) => `${p} ms (steps)`)], rows));
}

async function residentSection(): Promise<void> {
  const rec = new RecordingRuntime();
  await runRecipeText(rec, parityRecipes(join(root, 'resident-out'), { samples, seqLen, iters: 1, size }).autoround!, root, join(root, 'cache-resident'));
  await rec.close();
  const block = [...rec.records.values()].find((r) => family(r.key) === 'autoround.block');
  if (!block || typeof block.model === 'string') throw new Error('no autoround block recorded');
  // what changes every iteration: the learned tensors (signSGD updates them in JS) and the batch
  const learned = (name: string): boolean => /\.(value|min_scale|max_scale)$/.test(name) || name === 'x' || name === 'target';
  const rows: string[][] = [];
  for (const p of providers) {
    const rt = new Runtime({ device: p });
    const k = await rt.kernel(block.key, () => block.model as Uint8Array);
    const hostMs = await timed(() => k.run(block.feeds));
    const resident: Record<string, Tensor | Resident> = {};
    const t0 = performance.now();
    for (const [n, t] of Object.entries(block.feeds)) resident[n] = learned(n) ? t : await rt.upload(t);
    const uploadMs = performance.now() - t0;
    const residentMs = await timed(() => k.run(resident));
    const constBytes = Object.entries(block.feeds).filter(([n]) => !learned(n)).reduce((s, [, t]) => s + t.data.byteLength, 0);
    rows.push([p, (constBytes / 2 ** 20).toFixed(1), hostMs.toFixed(1), uploadMs.toFixed(1), residentMs.toFixed(1)]);
    await rt.close();
  }
  console.log(`\n### resident: one AutoRound block iteration (loss + gradients), ${size} example model, batch of ${samples} × ${seqLen}\n`);
  console.log(table(['provider', 'constant inputs MiB', 'ms / iteration, all inputs from the host', 'upload once ms', 'ms / iteration, constants resident'], rows));
}

async function paritySection(): Promise<void> {
  if (gpus.length === 0) return;
  const rec = new RecordingRuntime();
  const cache = join(root, 'cache-parity');
  for (const yaml of Object.values(parityRecipes(join(root, 'parity-out'), { samples: Math.min(samples, 4), seqLen: Math.min(seqLen, 32), iters: 1, nGrid: 2, size }))) {
    await runRecipeText(rec, yaml, root, cache);
  }
  await rec.close();
  for (const p of gpus) {
    console.log(`\n### parity: every kernel on ${p} against cpu\n`);
    console.log(parityTable(await replay(rec.records.values(), p), p));
  }
}

try {
  console.log(`providers: ${providers.join(', ')}`);
  if (sections.has('forward')) await forwardSection();
  if (sections.has('methods')) await methodsSection();
  if (sections.has('resident')) await residentSection();
  if (sections.has('parity')) await paritySection();
} finally {
  rmSync(root, { recursive: true, force: true });
}
