// A compressed-tensors checkpoint read back as float32 weights: pack-quantized and int-quantized Linears are
// unpacked and dequantized on load ((q − zp)·scale per group, g_idx honoured); modules with dynamic per-token
// input activations are fake-quantized at inference as the checkpoint declares.

import { dequantizeWeight } from '../quant/qparams.js';
import type { QuantScheme } from '../quant/scheme.js';
import { matchesClass, matchesName } from '../algo/targets.js';
import { unpackFromInt32, unpackZeroPoints } from '../formats/pack-quantized.js';
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
  throw new Error(`unexpected scale dtype ${t.dtype}`);
}

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

  async #linear(module: string, group: QuantScheme): Promise<Tensor<'float32'>> {
    const ck = this.#hf.checkpoint;
    const args = group.weights!;
    const scaleT = await ck.read(`${module}.weight_scale`);
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
    return out;
  }

  actQuant(l: number): ReadonlyMap<string, number> {
    const out = new Map<string, number>();
    const prefix = this.arch.layerPrefix(l);
    for (const lin of this.arch.layer(this.config, l).linears) {
      const a = this.groupOf(`${prefix}${lin.local}`)?.input_activations;
      if (a && a.dynamic && a.strategy === 'token') out.set(lin.local, a.num_bits);
    }
    return out;
  }

  close(): Promise<void> {
    return this.#hf.close();
  }
}
