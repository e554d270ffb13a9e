// Calibration activations between steps: `hidden.safetensors` holds the inputs of one decoder layer for every
// calibration window, float32 `[windows, seq_len, hidden]`. Layers run over them in batches sized so one
// onnxruntime call holds a bounded amount of attention scores.

import { join } from 'node:path';
import { SafetensorsFile, writeSafetensors } from '../formats/safetensors.js';
import type { ModelConfig } from '../model/config.js';
import { runDecoderLayer, type LayerRunOptions } from '../graphs/layer-runner.js';
import type { Runtime } from '../ort/session.js';
import { tensor, type Tensor } from '../tensor.js';
import { IDS_FILE } from './tokenize.js';
import type { LayerSpec, LinearSpec } from '../model/arch.js';
import { checkFiniteActivation } from '../model/finite.js';
import type { ActQuant } from '../quant/module-quant.js';

export const HIDDEN_FILE = 'hidden.safetensors';

export async function readTensorFile<D extends 'float32' | 'int32'>(dir: string, file: string, name: string): Promise<Tensor<D>> {
  const f = await SafetensorsFile.open(join(dir, file));
  try {
    return (await f.read(name)) as Tensor<D>;
  } finally {
    await f.close();
  }
}

export const readHidden = (dir: string): Promise<Tensor<'float32'>> => readTensorFile<'float32'>(dir, HIDDEN_FILE, 'hidden');
/** windows [start, end) of an activation file, read by offsets: a calibration shard holds only its own windows */
export async function readHiddenWindows(dir: string, start: number, end: number): Promise<Tensor<'float32'>> {
  const f = await SafetensorsFile.open(join(dir, HIDDEN_FILE));
  try {
    return (await f.readRows('hidden', start, end)) as Tensor<'float32'>;
  } finally {
    await f.close();
  }
}

/** the dims [windows, seq_len, hidden] of an activation file, from its header */
export async function hiddenDims(dir: string): Promise<[number, number, number]> {
  const f = await SafetensorsFile.open(join(dir, HIDDEN_FILE));
  try {
    const [n = 0, t = 0, h = 0] = f.info('hidden').shape;
    return [n, t, h];
  } finally {
    await f.close();
  }
}

/** the number of windows in an activation file, from its header */
export const hiddenWindows = async (dir: string): Promise<number> => (await hiddenDims(dir))[0];
export const readIds = (dir: string): Promise<Tensor<'int32'>> => readTensorFile<'int32'>(dir, IDS_FILE, 'ids');
export const writeHidden = (dir: string, hidden: Tensor<'float32'>): Promise<void> => writeSafetensors(join(dir, HIDDEN_FILE), { hidden });

/**
 * windows per onnxruntime call: about 2048 tokens, and attention scores under 128 MB. Every pass over an
 * activation file batches from window 0 (calibration shards start on a batch boundary: hessian-partials.ts
 * shardWindows), so a float32 reduction per batch is the same whichever step runs it.
 */
export function layerBatch(cfg: ModelConfig, T: number): number {
  const byTokens = Math.floor(2048 / T);
  const byScores = Math.floor((128 * 2 ** 20) / (cfg.numHeads * T * T * 4));
  return Math.max(1, Math.min(byTokens, byScores));
}

/**
 * Calibration runs the basic-op layer (graphs/decoder-graph.ts) on every provider, never the fused one that
 * evaluation and the ONNX export run: GPTQ's solve turns float32-rounding differences in its inputs into
 * flipped codes, so a step must run the same graph on cpu and webgpu (whose GroupQueryAttention is ~1e-2 off on
 * 32+ positions, docs/devices.md). Non-finite activations are reported with the layer's index (`spec.index`).
 */
export type BatchRunOptions = Omit<LayerRunOptions, 'fused' | 'spin'> & {
  /** windows per layer run instead of layerBatch's (a caller that splits a batch, e.g. to bound onnxruntime's intermediates) */
  windows?: number;
};

/** run one layer over all windows, batch by batch; `each` sees every batch's outputs, all of them finite */
export async function forEachBatch(
  rt: Runtime,
  cfg: ModelConfig,
  spec: LayerSpec,
  weights: Readonly<Record<string, Tensor>>,
  hidden: Tensor<'float32'>,
  options: BatchRunOptions,
  each: (out: Record<string, Tensor>, start: number, count: number) => void | Promise<void>,
  onBatch?: (done: number, total: number) => void,
): Promise<void> {
  const [N, T, H] = hidden.dims as [number, number, number];
  const { windows, ...run } = options;
  const batch = windows ?? layerBatch(cfg, T);
  const total = Math.ceil(N / batch);
  const layer = spec.index;
  for (let b = 0, i = 0; b < N; b += batch, i++) {
    const m = Math.min(batch, N - b);
    const x = tensor('float32', [m, T, H], hidden.data.subarray(b * T * H, (b + m) * T * H));
    checkFiniteActivation(x, { layer, what: `the input of the decoder layer (windows ${b}…${b + m - 1})`, modules: [], why: 'the step that made these activations let them through' });
    // calibration: JavaScript works on every batch's outputs, which a spinning onnxruntime thread would burn a core through
    const out = await runDecoderLayer(rt, cfg, spec, weights, x, { ...run, fused: false, spin: false });
    for (const [name, t] of Object.entries(out)) checkFiniteActivation(t, { layer, ...outputSite(name, spec.linears), why: "the layer's input and weights were finite, so the values overflowed float32" });
    await each(out, b, m);
    onBatch?.(i + 1, total);
  }
}

/** what a layer run's output `name` is: the layer output, or a statistic of some Linears' inputs (a tap) */
function outputSite(name: string, linears: readonly LinearSpec[]): { what: string; modules: string[] } {
  if (name === 'out') return { what: 'the output of the decoder layer', modules: [] };
  const modules = linears.filter((l) => name.includes(l.site) || name.includes(l.local)).map((l) => l.local);
  const of = modules.length > 0 ? ` (the inputs of ${modules.join(', ')})` : '';
  return { what: `the statistic "${name}"${of}`, modules };
}

/** the layer's outputs for every window: the next layer's inputs */
export async function propagate(
  rt: Runtime,
  cfg: ModelConfig,
  spec: LayerSpec,
  weights: Readonly<Record<string, Tensor>>,
  hidden: Tensor<'float32'>,
  actQuant: ActQuant,
  onBatch?: (done: number, total: number) => void,
): Promise<Tensor<'float32'>> {
  const [N, T, H] = hidden.dims as [number, number, number];
  const next = new Float32Array(N * T * H);
  await forEachBatch(rt, cfg, spec, weights, hidden, { actQuant }, (out, b) => next.set(out['out']!.data as Float32Array, b * T * H), onBatch);
  return tensor('float32', [N, T, H], next);
}
