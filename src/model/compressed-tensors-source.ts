// A compressed-tensors checkpoint read back as float32 weights: every format formats/compressed-tensors.ts
// writes is decoded and dequantized on load ((q − zp)·scale per group or block, g_idx honoured, NVFP4 scales
// over their global scale, MX scales from their e8m0 bytes); static input ranges (`input_scale`,
// `input_global_scale`) join the layer's tensors, and input activations are fake-quantized at inference as the
// checkpoint declares.

import { dequantizeWeight, type QParams } from '../quant/qparams.js';
import { checkActivationArgs, elementKind, isMx } from '../quant/quant-args.js';
import { staticInputTensor, type ActQuant } from '../quant/module-quant.js';
import type { QuantArgs, QuantScheme } from '../quant/scheme.js';
import { mxScaleValue } from '../quant/fp4.js';
import { decodeFp8E4m3Array } from '../quant/fp8.js';
import { matchesClass, matchesName } from '../algo/targets.js';
import { unpackFromInt32, unpackZeroPoints } from '../formats/pack-quantized.js';
import { unpackFp4 } from '../formats/fp4-pack.js';
import { fromBfloat16, fromFloat16 } from '../formats/half.js';
import type { Tensor } from '../tensor.js';
import { tensor } from '../tensor.js';
import { HfSource, stripPrefix, type WeightSource } from './source.js';
import { ReasonedError } from '../diag/failure.js';

/** quantization_config as a compressed-tensors checkpoint writes it: each config group is a resolved scheme */
interface QuantizationConfig {
  quant_method: string;
  config_groups: Record<string, QuantScheme>;
  ignore: string[];
}

export function quantizationConfigOf(raw: Record<string, unknown>): QuantizationConfig | undefined {
  const q = raw['quantization_config'] as QuantizationConfig | undefined;
  return q && q.quant_method === 'compressed-tensors' ? q : undefined;
}

function asF32(t: Tensor): Float32Array {
  if (t.dtype === 'float32') return t.data as Float32Array;
  if (t.dtype === 'bfloat16') return fromBfloat16(t.data as Uint16Array);
  if (t.dtype === 'float16') return fromFloat16(t.data as Uint16Array);
  if (t.dtype === 'float8e4m3fn') return decodeFp8E4m3Array(t.data as Uint8Array);
  throw new Error(`unexpected scale dtype ${t.dtype}`);
}

const int8View = (t: Tensor): Int8Array => new Int8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);

export class CompressedTensorsSource implements WeightSource {
  readonly #hf: HfSource;
  readonly #q: QuantizationConfig;
  readonly #linears: ReadonlySet<string>;

  private constructor(hf: HfSource, q: QuantizationConfig) {
    this.#hf = hf;
    this.#q = q;
    this.#linears = new Set(hf.arch.modules(hf.config).filter((m) => m.className === 'Linear').map((m) => m.name));
  }

  static async open(dir: string): Promise<CompressedTensorsSource> {
    const hf = await HfSource.open(dir, { quantized: true });
    const q = quantizationConfigOf(hf.config.raw);
    if (!q) throw new ReasonedError('bad-config', `${dir}/config.json: no compressed-tensors quantization_config`);
    for (const [name, g] of Object.entries(q.config_groups)) if (g.input_activations) checkActivationArgs(g.input_activations, `${dir}/config.json ${name}.input_activations`);
    return new CompressedTensorsSource(hf, q);
  }

  get dir(): string { return this.#hf.dir; }
  get config(): HfSource['config'] { return this.#hf.config; }
  get arch(): HfSource['arch'] { return this.#hf.arch; }

  /** the config group of a module, if it is quantized */
  groupOf(name: string): QuantScheme | undefined {
    if (!this.#linears.has(name) || this.#q.ignore.some((p) => matchesName(name, p))) return undefined;
    const mod = { name, className: 'Linear' };
    return Object.values(this.#q.config_groups).find((g) => g.targets.some((t) => matchesName(name, t) || matchesClass(mod, t)));
  }

  /** element codes and qparams of a float weight: fp8 bytes (float-quantized) or packed e2m1 (NVFP4, MXFP4) */
  async #floatCodes(module: string, args: QuantArgs, scaleT: Tensor): Promise<{ codes: Int8Array; rows: number; cols: number; qp: QParams }> {
    const ck = this.#hf.checkpoint;
    const zeros = (n: number): Int8Array => new Int8Array(n);
    if (elementKind(args) === 'fp8') {
      const w = await ck.read(`${module}.weight`);
      const [rows, cols] = w.dims as [number, number];
      const scale = asF32(scaleT);
      return { codes: int8View(w), rows, cols, qp: { scale, zeroPoint: zeros(scale.length) } };
    }
    const packed = await ck.read(`${module}.weight_packed`);
    const [rows, half] = packed.dims as [number, number];
    const codes = unpackFp4(packed.data as Uint8Array, rows, 2 * half);
    if (isMx(args)) {
      const scale = Float32Array.from(scaleT.data as Uint8Array, mxScaleValue);
      return { codes, rows, cols: 2 * half, qp: { scale, zeroPoint: zeros(scale.length) } };
    }
    const scale = asF32(scaleT);
    const globalScale = asF32(await ck.read(`${module}.weight_global_scale`))[0] as number;
    return { codes, rows, cols: 2 * half, qp: { scale, zeroPoint: zeros(scale.length), globalScale } };
  }

  async #linear(module: string, group: QuantScheme): Promise<Tensor<'float32'>> {
    const ck = this.#hf.checkpoint;
    const args = group.weights!;
    const scaleT = await ck.read(`${module}.weight_scale`);
    if (args.type === 'float') {
      const { codes, rows, cols, qp } = await this.#floatCodes(module, args, scaleT);
      return tensor('float32', [rows, cols], dequantizeWeight(codes, rows, cols, qp, args));
    }
    const scale = asF32(scaleT);
    let codes: Int8Array;
    let rows: number;
    let cols: number;
    let zeroPoint: Int8Array = new Int8Array(scale.length);
    if (ck.has(`${module}.weight_packed`)) {
      const shape = (await ck.read(`${module}.weight_shape`)).data as BigInt64Array;
      [rows, cols] = [Number(shape[0]), Number(shape[1])];
      codes = unpackFromInt32((await ck.read(`${module}.weight_packed`)).data as Int32Array, rows, cols, args.num_bits);
      if (ck.has(`${module}.weight_zero_point`)) {
        zeroPoint = unpackZeroPoints((await ck.read(`${module}.weight_zero_point`)).data as Int32Array, rows, scale.length / rows, args.num_bits);
      }
    } else {
      const w = await ck.read(`${module}.weight`);
      [rows, cols] = w.dims as [number, number];
      codes = w.data as Int8Array;
    }
    const gIdx = ck.has(`${module}.weight_g_idx`) ? ((await ck.read(`${module}.weight_g_idx`)).data as Int32Array) : undefined;
    return tensor('float32', [rows, cols], dequantizeWeight(codes, rows, cols, { scale, zeroPoint }, args, gIdx));
  }

  async tensor(name: string): Promise<Tensor<'float32'>> {
    const module = name.replace(/\.weight$/, '');
    const group = name.endsWith('.weight') ? this.groupOf(module) : undefined;
    return group?.weights ? this.#linear(module, group) : this.#hf.tensor(name);
  }

  async layer(l: number): Promise<Record<string, Tensor<'float32'>>> {
    const prefix = this.arch.layerPrefix(l);
    const out: Record<string, Tensor<'float32'>> = {};
    for (const name of this.arch.layerTensors(this.config, l)) out[stripPrefix(prefix, name)] = await this.tensor(name);
    for (const [local, a] of this.actQuant(l)) {
      const suffix = staticInputTensor(a);
      if (!suffix) continue;
      const t = await this.#hf.checkpoint.read(`${prefix}${local}.${suffix}`);
      out[`${local}.${suffix}`] = tensor('float32', [1], asF32(t).slice(0, 1));
    }
    return out;
  }

  actQuant(l: number): ActQuant {
    const out = new Map<string, QuantArgs>();
    const prefix = this.arch.layerPrefix(l);
    for (const lin of this.arch.linears(this.config)) {
      const g = this.groupOf(`${prefix}${lin.local}`);
      if (g?.weights && g.input_activations) out.set(lin.local, g.input_activations);
    }
    return out;
  }

  close(): Promise<void> {
    return this.#hf.close();
  }
}
