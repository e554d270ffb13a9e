// A compressed-tensors checkpoint read back as float32 weights: every format formats/compressed-tensors.ts
// writes is decoded and dequantized on load ((q − zp)·scale per group or block, g_idx honoured, NVFP4 scales
// over their global scale, MX scales from their e8m0 bytes); static input ranges (`input_scale`,
// `input_global_scale`) join the layer's tensors, and input activations are fake-quantized at inference as the
// checkpoint declares. The quantization_config is parsed strictly (quantization-config.ts) and every stored
// tensor's dtype and shape is checked against it and config.json before it is decoded; a bad one is a
// CompressedTensorsError naming the file and tensor.

import { join } from 'node:path';
import { dequantizeWeight, qparamShape, type QParams } from '../quant/qparams.js';
import { elementKind, isMx } from '../quant/quant-args.js';
import { staticInputTensor, type ActQuant } from '../quant/module-quant.js';
import type { QuantArgs, QuantScheme } from '../quant/scheme.js';
import { mxScaleValue } from '../quant/fp4.js';
import { decodeFp8E4m3Array } from '../quant/fp8.js';
import { matchesClass, matchesName } from '../algo/targets.js';
import { fromBfloat16, fromFloat16 } from '../quant/half.js';
import { unpackFromInt32, unpackZeroPoints } from '../formats/pack-quantized.js';
import { unpackFp4 } from '../formats/fp4-pack.js';
import { shapeString, tensor, type DType, type Tensor } from '../tensor.js';
import { checkFiniteWeight } from './finite.js';
import { CompressedTensorsError, parseQuantizationConfig, type QuantizationConfig } from './quantization-config.js';
import { HfSource, readLayer, type WeightSource } from './source.js';

/** the dtypes a checkpoint stores scales in: the model dtype (float32, float16, bfloat16) */
const MODEL_DTYPES: readonly DType[] = ['float32', 'float16', 'bfloat16'];

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
  /** Linear module name → its [out, in] from config.json */
  readonly #linears: ReadonlyMap<string, readonly [number, number]>;

  private constructor(hf: HfSource, q: QuantizationConfig) {
    this.#hf = hf;
    this.#q = q;
    const cfg = hf.config;
    const shapes = new Map<string, readonly [number, number]>();
    for (let l = 0; l < cfg.numLayers; l++) {
      for (const lin of hf.arch.layer(cfg, l).linears) shapes.set(`${hf.arch.layerPrefix(l)}${lin.local}`, [lin.outFeatures, lin.inFeatures]);
    }
    // a tied head is the embedding, which is no Linear and never quantized (it has no weights of its own)
    if (!cfg.tieWordEmbeddings) shapes.set(hf.arch.lmHeadWeight(cfg).replace(/\.weight$/, ''), [cfg.vocabSize, cfg.hiddenSize]);
    this.#linears = shapes;
  }

  static async open(dir: string): Promise<CompressedTensorsSource> {
    const hf = await HfSource.open(dir, { quantized: true });
    try {
      const file = join(dir, 'config.json');
      const q = parseQuantizationConfig(hf.config.raw, file);
      if (!q) {
        throw new CompressedTensorsError('quantization-config-invalid', `${file}: no compressed-tensors quantization_config`, { file, field: 'quantization_config' });
      }
      return new CompressedTensorsSource(hf, q);
    } catch (e) {
      await hf.close();
      throw e;
    }
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

  #invalid(file: string, name: string, what: string): CompressedTensorsError {
    return new CompressedTensorsError('quantized-tensor-invalid', `${file}: tensor ${name} ${what}`, { file, field: name });
  }

  /** the stored tensor `name`, after checking it exists with one of `dtypes` and the shape `dims` */
  async #stored(name: string, dtypes: readonly DType[], dims: readonly number[]): Promise<Tensor> {
    const ck = this.#hf.checkpoint;
    if (!ck.has(name)) throw this.#invalid(ck.index ?? this.dir, name, 'is missing; the quantization_config says its module is quantized');
    const info = await ck.info(name);
    if (!dtypes.includes(info.dtype)) throw this.#invalid(info.file, name, `is ${info.dtype}; expected ${dtypes.join(' or ')}`);
    const sameShape = info.shape.length === dims.length && info.shape.every((d, i) => d === dims[i]);
    if (!sameShape) throw this.#invalid(info.file, name, `has shape ${shapeString(info.shape)}; config.json and the quantization_config imply ${shapeString(dims)}`);
    return ck.read(name);
  }

  /** a stored per-tensor scale ([1]): a finite positive number */
  async #scalar(name: string, dtypes: readonly DType[]): Promise<number> {
    const v = asF32(await this.#stored(name, dtypes, [1]))[0] as number;
    if (!(Number.isFinite(v) && v > 0)) throw this.#invalid((await this.#hf.checkpoint.info(name)).file, name, `is ${v}; expected a finite positive scale`);
    return v;
  }

  /** the weight_scale dims: qparamShape's, or [1] for a per-tensor scale stored 1-D */
  async #scaleDims(module: string, rows: number, cols: number, args: QuantArgs): Promise<number[]> {
    const ck = this.#hf.checkpoint;
    const name = `${module}.weight_scale`;
    const oneD = args.strategy === 'tensor' && ck.has(name) && (await ck.info(name)).shape.length === 1;
    return oneD ? [1] : qparamShape(rows, cols, args);
  }

  /** element codes and qparams of a float weight: fp8 bytes (float-quantized) or packed e2m1 (NVFP4, MXFP4) */
  async #floatCodes(module: string, rows: number, cols: number, args: QuantArgs): Promise<{ codes: Int8Array; qp: QParams; gIdx?: Int32Array }> {
    const zeros = (n: number): Int8Array => new Int8Array(n);
    const scaleDims = await this.#scaleDims(module, rows, cols, args);
    if (elementKind(args) === 'fp8') {
      const w = await this.#stored(`${module}.weight`, ['float8e4m3fn'], [rows, cols]);
      const scale = asF32(await this.#stored(`${module}.weight_scale`, MODEL_DTYPES, scaleDims));
      return { codes: int8View(w), qp: { scale, zeroPoint: zeros(scale.length) } };
    }
    if (cols % 2 !== 0) {
      const ck = this.#hf.checkpoint;
      throw this.#invalid(ck.index ?? this.dir, `${module}.weight_packed`, `cannot hold ${cols} fp4 columns two per byte; config.json's in_features must be even`);
    }
    const packed = await this.#stored(`${module}.weight_packed`, ['uint8'], [rows, cols / 2]);
    const codes = unpackFp4(packed.data as Uint8Array, rows, cols);
    if (isMx(args)) {
      const bytes = await this.#stored(`${module}.weight_scale`, ['uint8'], scaleDims);
      const scale = Float32Array.from(bytes.data as Uint8Array, mxScaleValue);
      return { codes, qp: { scale, zeroPoint: zeros(scale.length) } };
    }
    const scale = asF32(await this.#stored(`${module}.weight_scale`, ['float8e4m3fn'], scaleDims));
    const globalScale = await this.#scalar(`${module}.weight_global_scale`, ['float32']);
    return { codes, qp: { scale, zeroPoint: zeros(scale.length), globalScale } };
  }

  /** codes, qparams and g_idx of an int weight: pack-quantized (int32 words) or int-quantized (int8) */
  async #intCodes(module: string, rows: number, cols: number, args: QuantArgs): Promise<{ codes: Int8Array; qp: QParams; gIdx?: Int32Array }> {
    const ck = this.#hf.checkpoint;
    const bits = args.num_bits;
    const [scaleRows, groups] = qparamShape(rows, cols, args);
    const scale = asF32(await this.#stored(`${module}.weight_scale`, MODEL_DTYPES, await this.#scaleDims(module, rows, cols, args)));
    let codes: Int8Array;
    let zeroPoint: Int8Array = new Int8Array(scale.length);
    if (ck.has(`${module}.weight_packed`)) {
      const shape = (await this.#stored(`${module}.weight_shape`, ['int64', 'int32'], [2])).data as BigInt64Array | Int32Array;
      if (Number(shape[0]) !== rows || Number(shape[1]) !== cols) {
        const file = (await ck.info(`${module}.weight_shape`)).file;
        throw this.#invalid(file, `${module}.weight_shape`, `is [${shape[0]}, ${shape[1]}]; config.json implies [${rows}, ${cols}]`);
      }
      const packed = await this.#stored(`${module}.weight_packed`, ['int32'], [rows, Math.ceil((cols * bits) / 32)]);
      codes = unpackFromInt32(packed.data as Int32Array, rows, cols, bits);
      if (!args.symmetric || ck.has(`${module}.weight_zero_point`)) {
        const zp = await this.#stored(`${module}.weight_zero_point`, ['int32'], [Math.ceil((scaleRows * bits) / 32), scale.length / scaleRows]);
        zeroPoint = unpackZeroPoints(zp.data as Int32Array, scaleRows, scale.length / scaleRows, bits);
      }
    } else {
      codes = (await this.#stored(`${module}.weight`, ['int8'], [rows, cols])).data as Int8Array;
    }
    if (!ck.has(`${module}.weight_g_idx`)) return { codes, qp: { scale, zeroPoint } };
    const gIdx = (await this.#stored(`${module}.weight_g_idx`, ['int32'], [cols])).data as Int32Array;
    const bad = gIdx.findIndex((g) => g < 0 || g >= groups);
    if (bad >= 0) {
      const file = (await ck.info(`${module}.weight_g_idx`)).file;
      throw this.#invalid(file, `${module}.weight_g_idx`, `has group ${gIdx[bad]} at column ${bad}; expected groups in [0, ${groups})`);
    }
    return { codes, qp: { scale, zeroPoint }, gIdx };
  }

  async #linear(module: string, args: QuantArgs): Promise<Tensor<'float32'>> {
    const [rows, cols] = this.#linears.get(module)!;
    const { codes, qp, gIdx } = args.type === 'float' ? await this.#floatCodes(module, rows, cols, args) : await this.#intCodes(module, rows, cols, args);
    const w = tensor('float32', [rows, cols], dequantizeWeight(codes, rows, cols, qp, args, gIdx));
    checkFiniteWeight(w, { name: `${module}.weight`, file: (await this.#hf.checkpoint.info(`${module}.weight_scale`)).file });
    return w;
  }

  async tensor(name: string): Promise<Tensor<'float32'>> {
    const module = name.replace(/\.weight$/, '');
    const group = name.endsWith('.weight') ? this.groupOf(module) : undefined;
    return group?.weights ? this.#linear(module, group.weights) : this.#hf.tensor(name);
  }

  /** the layer's tensors and the static input ranges of its quantized Linears (`<local>.input_scale`, `<local>.input_global_scale`) */
  async layer(l: number): Promise<Record<string, Tensor<'float32'>>> {
    const out = await readLayer(this, l);
    const prefix = this.arch.layerPrefix(l);
    for (const [local, a] of this.actQuant(l)) {
      const suffix = staticInputTensor(a);
      if (!suffix) continue;
      const dtypes = suffix === 'input_scale' ? MODEL_DTYPES : (['float32'] as const);
      out[`${local}.${suffix}`] = tensor('float32', [1], Float32Array.of(await this.#scalar(`${prefix}${local}.${suffix}`, dtypes)));
    }
    return out;
  }

  actQuant(l: number): ActQuant {
    const out = new Map<string, QuantArgs>();
    const prefix = this.arch.layerPrefix(l);
    for (const lin of this.arch.layer(this.config, l).linears) {
      const g = this.groupOf(`${prefix}${lin.local}`);
      if (g?.weights && g.input_activations) out.set(lin.local, g.input_activations);
    }
    return out;
  }

  close(): Promise<void> {
    return this.#hf.close();
  }
}
