// The layer-state artifact: every tensor of one decoder layer after a stage (float32, local names), plus the
// quantization of each quantized Linear: `m.weight` holds the dequantized values the forward uses, beside
// `m.weight_codes` (int8 element codes), `m.weight_scale`, `m.weight_zero_point` (asymmetric only),
// `m.weight_g_idx` (act-order groups), `m.weight_global_scale` (NVFP4), `m.weight_gguf` (GGUF schemes: each
// block's stored qparams, the codes then as the blocks store them), and quant.json records each module's
// quantization args. Calibrated static input ranges are ordinary layer tensors, `m.input_scale` (FP8) and
// `m.input_global_scale` (NVFP4), so the decoder graphs are fed them like weights. Pack and export read it.

import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { actQuantOf, type ActQuant, type ModuleQuant, type QuantizedModule } from '../quant/module-quant.js';

export { actQuantOf } from '../quant/module-quant.js';
import { SafetensorsFile, writeSafetensors } from '../formats/safetensors.js';
import { tensor, type Tensor } from '../tensor.js';
import { fromBfloat16, fromFloat16, toBfloat16, toFloat16 } from '../quant/half.js';
import { checkFiniteWeight } from '../model/finite.js';
import { HfSource, type WeightSource } from '../model/source.js';
import { optionalInput, requireModel, type StepContext, type StepInputDir } from './types.js';
import { readJsonFile } from '../diag/file-errors.js';
import type { ScaleDtype } from '../quant/qparams.js';

export const LAYER_FILE = 'layer.safetensors';
export const QUANT_FILE = 'quant.json';
export const QUANT_SUFFIXES = ['weight_codes', 'weight_scale', 'weight_zero_point', 'weight_g_idx', 'weight_global_scale', 'weight_gguf'] as const;

export interface LayerState {
  layer: number;
  /** float32 tensors by local name (`self_attn.q_proj.weight`); quantized Linears hold dequantized weights */
  tensors: Record<string, Tensor<'float32'>>;
  /** quantized Linears by local module name */
  quant: Record<string, QuantizedModule>;
}

const isQuantTensor = (name: string): boolean => QUANT_SUFFIXES.some((s) => name.endsWith(`.${s}`));

export async function writeLayerState(dir: string, state: LayerState): Promise<void> {
  // every method (rtn, gptq, awq, smoothquant, autoround) ends here: a NaN it made stops its own step
  for (const [name, t] of Object.entries(state.tensors)) checkFiniteWeight(t, { name, layer: state.layer, file: join(dir, LAYER_FILE) });
  const tensors: [string, Tensor][] = Object.entries(state.tensors);
  const quant: Record<string, ModuleQuant> = {};
  for (const [m, q] of Object.entries(state.quant)) {
    tensors.push([`${m}.weight_codes`, q.codes], [`${m}.weight_scale`, q.scale]);
    if (q.zeroPoint) tensors.push([`${m}.weight_zero_point`, q.zeroPoint]);
    if (q.gIdx) tensors.push([`${m}.weight_g_idx`, q.gIdx]);
    if (q.globalScale) tensors.push([`${m}.weight_global_scale`, q.globalScale]);
    if (q.gguf) tensors.push([`${m}.weight_gguf`, q.gguf]);
    quant[m] = { weights: q.weights, input_activations: q.input_activations };
  }
  await writeSafetensors(join(dir, LAYER_FILE), tensors);
  await writeFile(join(dir, QUANT_FILE), `${JSON.stringify({ layer: state.layer, modules: quant }, null, 1)}\n`);
}

export function readQuantInfo(dir: string): Record<string, ModuleQuant> {
  const file = join(dir, QUANT_FILE);
  if (!existsSync(file)) return {};
  return (readJsonFile(file) as { modules: Record<string, ModuleQuant> }).modules;
}

export async function readLayerState(dir: string, layer: number): Promise<LayerState> {
  const f = await SafetensorsFile.open(join(dir, LAYER_FILE));
  try {
    const tensors: Record<string, Tensor<'float32'>> = {};
    for (const name of f.tensors.keys()) if (!isQuantTensor(name)) tensors[name] = await f.readAs(name, 'float32');
    const quant: LayerState['quant'] = {};
    for (const [m, info] of Object.entries(readQuantInfo(dir))) {
      const get = async <D extends 'int8' | 'float32' | 'int32'>(n: string): Promise<Tensor<D> | undefined> =>
        f.tensors.has(`${m}.${n}`) ? ((await f.read(`${m}.${n}`)) as Tensor<D>) : undefined;
      const codes = await get<'int8'>('weight_codes');
      const scale = await get<'float32'>('weight_scale');
      if (!codes || !scale) throw new Error(`${dir}: quantized module ${m} lacks its codes or scales`);
      const zeroPoint = await get<'int8'>('weight_zero_point');
      const gIdx = await get<'int32'>('weight_g_idx');
      const globalScale = await get<'float32'>('weight_global_scale');
      const gguf = f.tensors.has(`${m}.weight_gguf`) ? ((await f.read(`${m}.weight_gguf`)) as Tensor<'int16'>) : undefined;
      quant[m] = { ...info, codes, scale, ...(zeroPoint ? { zeroPoint } : {}), ...(gIdx ? { gIdx } : {}), ...(globalScale ? { globalScale } : {}), ...(gguf ? { gguf } : {}) };
    }
    return { layer, tensors, quant };
  } finally {
    await f.close();
  }
}

/** the float tensors of layer `l` as the previous stage left them: its state artifact, or the base model */
export async function loadLayerInput(base: WeightSource, state: StepInputDir | undefined, layer: number): Promise<LayerState> {
  if (state) return readLayerState(state.dir, layer);
  return { layer, tensors: await base.layer(layer), quant: {} };
}

/** a per-layer step's model and its layer's input state (input role `state`); the caller closes `src` */
export async function openLayerInput(ctx: StepContext<unknown>, layer: number): Promise<{ src: HfSource; state: LayerState }> {
  const src = await HfSource.open(requireModel(ctx));
  try {
    return { src, state: await loadLayerInput(src, optionalInput(ctx, 'state'), layer) };
  } catch (e) {
    await src.close();
    throw e;
  }
}

/**
 * The dtype each module of layer `layer` stores its scales in: its weight's in the checkpoint (pack writes
 * them so), float32 for any other dtype
 */
export async function scaleDtypesOf(src: HfSource, layer: number, locals: readonly string[]): Promise<Map<string, ScaleDtype>> {
  const out = new Map<string, ScaleDtype>();
  for (const local of locals) {
    const name = `${src.arch.layerPrefix(layer)}${local}.weight`;
    const d = src.checkpoint.has(name) ? (await src.checkpoint.info(name)).dtype : 'float32';
    out.set(local, d === 'bfloat16' || d === 'float16' ? d : 'float32');
  }
  return out;
}

/**
 * The layer's float tensors rounded (to nearest even) to the dtype the checkpoint stores each in (bfloat16,
 * float16), as torch keeps a smoothed model in its own dtype: what the forward then uses is what pack writes
 */
export async function roundToStoredDtypes(src: HfSource, state: LayerState): Promise<void> {
  const prefix = src.arch.layerPrefix(state.layer);
  for (const [local, t] of Object.entries(state.tensors)) {
    const name = `${prefix}${local}`;
    const d = src.checkpoint.has(name) ? (await src.checkpoint.info(name)).dtype : 'float32';
    if (d === 'bfloat16') state.tensors[local] = tensor('float32', t.dims, fromBfloat16(toBfloat16(t.data)));
    if (d === 'float16') state.tensors[local] = tensor('float32', t.dims, fromFloat16(toFloat16(t.data)));
  }
}

/** a base model with decoder layers replaced by layer-state artifacts (one per layer, in order) */
export class OverlaySource implements WeightSource {
  readonly #base: HfSource;
  readonly #states: readonly (StepInputDir | undefined)[];
  readonly #actQuant: ActQuant[];

  constructor(base: HfSource, states: readonly (StepInputDir | undefined)[]) {
    this.#base = base;
    this.#states = states;
    this.#actQuant = states.map((s) => (s ? actQuantOf(readQuantInfo(s.dir)) : new Map()));
  }

  get dir(): string { return this.#base.dir; }
  get config(): HfSource['config'] { return this.#base.config; }
  get arch(): HfSource['arch'] { return this.#base.arch; }

  tensor(name: string): Promise<Tensor<'float32'>> {
    return this.#base.tensor(name);
  }

  async layer(l: number): Promise<Record<string, Tensor<'float32'>>> {
    const s = this.#states[l];
    return s ? (await readLayerState(s.dir, l)).tensors : this.#base.layer(l);
  }

  actQuant(l: number): ActQuant {
    return this.#actQuant[l] ?? new Map();
  }

  close(): Promise<void> {
    return this.#base.close();
  }
}
