// A compressed-tensors checkpoint read back as float32 weights: pack-quantized and int-quantized Linears are
// unpacked and dequantized on load ((q − zp)·scale per group, g_idx honoured); modules with dynamic per-token
// input activations are fake-quantized at inference as the checkpoint declares. The quantization_config is
// parsed strictly (quantization-config.ts) and every stored tensor's dtype and shape is checked against it
// and config.json before it is unpacked; a bad one is a CompressedTensorsError naming the file and tensor.

import { join } from 'node:path';
import { dequantizeWeight, qparamShape } from '../quant/qparams.js';
import type { QuantArgs, QuantScheme } from '../quant/scheme.js';
import { matchesClass, matchesName } from '../algo/targets.js';
import { fromBfloat16, fromFloat16 } from '../quant/half.js';
import { unpackFromInt32, unpackZeroPoints } from '../formats/pack-quantized.js';
import { shapeString, tensor, type DType, type Tensor } from '../tensor.js';
import { checkFiniteWeight } from './finite.js';
import { CompressedTensorsError, parseQuantizationConfig, type QuantizationConfig } from './quantization-config.js';
import { HfSource, readLayer, type WeightSource } from './source.js';

function asF32(t: Tensor): Float32Array {
  if (t.dtype === 'float32') return t.data as Float32Array;
  if (t.dtype === 'bfloat16') return fromBfloat16(t.data as Uint16Array);
  return fromFloat16(t.data as Uint16Array);
}

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
      for (const lin of hf.arch.linears(cfg)) shapes.set(`${hf.arch.layerPrefix(l)}${lin.local}`, [lin.outFeatures, lin.inFeatures]);
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

  /** the stored tensor `name`, after checking it exists with one of `dtypes` and the shape `dims` */
  async #stored(name: string, dtypes: readonly DType[], dims: readonly number[]): Promise<Tensor> {
    const ck = this.#hf.checkpoint;
    const bad = (file: string, what: string) => new CompressedTensorsError('quantized-tensor-invalid', `${file}: tensor ${name} ${what}`, { file, field: name });
    if (!ck.has(name)) throw bad(ck.index ?? this.dir, 'is missing; the quantization_config says its module is quantized');
    const info = await ck.info(name);
    if (!dtypes.includes(info.dtype)) throw bad(info.file, `is ${info.dtype}; expected ${dtypes.join(' or ')}`);
    const sameShape = info.shape.length === dims.length && info.shape.every((d, i) => d === dims[i]);
    if (!sameShape) throw bad(info.file, `has shape ${shapeString(info.shape)}; config.json and the quantization_config imply ${shapeString(dims)}`);
    return ck.read(name);
  }

  async #linear(module: string, args: QuantArgs): Promise<Tensor<'float32'>> {
    const ck = this.#hf.checkpoint;
    const [rows, cols] = this.#linears.get(module)!;
    const bits = args.num_bits;
    const [scaleRows, groups] = qparamShape(rows, cols, args);
    const scaleDims = ck.has(`${module}.weight_scale`) && args.strategy === 'tensor' && (await ck.info(`${module}.weight_scale`)).shape.length === 1 ? [1] : [scaleRows, groups];
    const scale = asF32(await this.#stored(`${module}.weight_scale`, ['float32', 'float16', 'bfloat16'], scaleDims));
    let codes: Int8Array;
    let zeroPoint: Int8Array = new Int8Array(scale.length);
    if (ck.has(`${module}.weight_packed`)) {
      const shape = (await this.#stored(`${module}.weight_shape`, ['int64', 'int32'], [2])).data as BigInt64Array | Int32Array;
      if (Number(shape[0]) !== rows || Number(shape[1]) !== cols) {
        const file = (await ck.info(`${module}.weight_shape`)).file;
        throw new CompressedTensorsError('quantized-tensor-invalid', `${file}: tensor ${module}.weight_shape is [${shape[0]}, ${shape[1]}]; config.json implies [${rows}, ${cols}]`, { file, field: `${module}.weight_shape` });
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
    let gIdx: Int32Array | undefined;
    if (ck.has(`${module}.weight_g_idx`)) {
      gIdx = (await this.#stored(`${module}.weight_g_idx`, ['int32'], [cols])).data as Int32Array;
      const bad = gIdx.findIndex((g) => g < 0 || g >= groups);
      if (bad >= 0) {
        const file = (await ck.info(`${module}.weight_g_idx`)).file;
        throw new CompressedTensorsError('quantized-tensor-invalid', `${file}: tensor ${module}.weight_g_idx has group ${gIdx[bad]} at column ${bad}; expected groups in [0, ${groups})`, { file, field: `${module}.weight_g_idx` });
      }
    }
    const w = tensor('float32', [rows, cols], dequantizeWeight(codes, rows, cols, { scale, zeroPoint }, args, gIdx));
    checkFiniteWeight(w, { name: `${module}.weight`, file: (await ck.info(`${module}.weight_scale`)).file });
    return w;
  }

  async tensor(name: string): Promise<Tensor<'float32'>> {
    const module = name.replace(/\.weight$/, '');
    const group = name.endsWith('.weight') ? this.groupOf(module) : undefined;
    return group?.weights ? this.#linear(module, group.weights) : this.#hf.tensor(name);
  }

  layer(l: number): Promise<Record<string, Tensor<'float32'>>> {
    return readLayer(this, l);
  }

  actQuant(l: number): ReadonlyMap<string, number> {
    const out = new Map<string, number>();
    const prefix = this.arch.layerPrefix(l);
    for (const lin of this.arch.linears(this.config)) {
      const a = this.groupOf(`${prefix}${lin.local}`)?.input_activations;
      if (a && a.dynamic && a.strategy === 'token') out.set(lin.local, a.num_bits);
    }
    return out;
  }

  close(): Promise<void> {
    return this.#hf.close();
  }
}
