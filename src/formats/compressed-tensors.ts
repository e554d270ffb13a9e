// compressed-tensors checkpoints (what vLLM loads), DESIGN.md §3. Per quantized Linear `m`, by format
// (compressed-tensors config/format.py infers it from the args; compressors/ write the tensors):
//
//   pack-quantized (weight-only int4/int8):
//     m.weight_packed        int32 [out, ceil(in·b/32)]   codes + 2^(b−1), element 0 in the low bits
//     m.weight_scale         model dtype [out, groups]    (channel: [out, 1])
//     m.weight_shape         int64 [2] = [out, in]
//     m.weight_zero_point    int32 [ceil(out·b/32), groups]   asymmetric only, packed along the output dim
//     m.weight_g_idx         int32 [in]                   actorder group only
//   int-quantized (int weights with input activations: W8A8, W4A8 — int4 codes are stored unpacked):
//     m.weight               int8 [out, in]
//     m.weight_scale         model dtype [out, groups]    (channel: [out, 1])
//   float-quantized (fp8 weights with input activations: FP8, FP8_DYNAMIC, FP8_BLOCK; naive-quantized without):
//     m.weight               float8_e4m3fn [out, in]
//     m.weight_scale         model dtype: [1] (tensor), [out, 1] (channel), [ceil(out/br), ceil(in/bc)] (block)
//     m.input_scale          model dtype [1]              static per-tensor activations (FP8) only
//   nvfp4-pack-quantized (fp4, tensor_group: NVFP4A16, NVFP4):
//     m.weight_packed        uint8 [out, in/2]            e2m1 codes, two per byte (formats/fp4-pack.ts)
//     m.weight_scale         float8_e4m3fn [out, groups]
//     m.weight_global_scale  float32 [1]
//     m.input_global_scale   float32 [1]                  NVFP4 activations only
//   mxfp4-pack-quantized (fp4, group 32: MXFP4A16, MXFP4; compressed-tensors ≥ 0.14):
//     m.weight_packed        uint8 [out, in/2]
//     m.weight_scale         uint8 [out, groups]          e8m0 bytes, scale = 2^(b − 127)
//
// Dynamic activations write nothing. Every other tensor is copied in the model dtype. config.json gains
// `quantization_config`; `ignore` lists the Linear modules left unquantized by their real names.

import { toCompressedTensorsScheme } from '../quant/scheme.js';
import { elementKind, isMx } from '../quant/quant-args.js';
import { mxScaleByteOf } from '../quant/fp4.js';
import { encodeFp8E4m3Array } from '../quant/fp8.js';
import { tensor, type Tensor } from '../tensor.js';
import { packToInt32, packZeroPoints } from './pack-quantized.js';
import { packFp4 } from './fp4-pack.js';
import type { ModuleQuant, QuantizedModule } from '../quant/module-quant.js';
import { toBfloat16, toFloat16 } from '../quant/half.js';
import { ReasonedError } from '../diag/failure.js';

/** the compressed-tensors version whose config every int, FP8 and NVFP4 scheme is written as */
export const COMPRESSED_TENSORS_VERSION = '0.12.2';
/** the first version that reads MXFP4 (scale_dtype and the fixed e8m0 scale bytes) */
export const MXFP4_VERSION = '0.14.0';

export type CtFormat = 'pack-quantized' | 'int-quantized' | 'float-quantized' | 'naive-quantized' | 'nvfp4-pack-quantized' | 'mxfp4-pack-quantized';

/** the format compressed-tensors infers for a module's args (_get_quant_compression_format) */
export function formatOf(q: ModuleQuant): CtFormat {
  const kind = elementKind(q.weights);
  if (kind === 'fp4') return isMx(q.weights) ? 'mxfp4-pack-quantized' : 'nvfp4-pack-quantized';
  const a = q.input_activations;
  if (kind === 'fp8') return a === null ? 'naive-quantized' : 'float-quantized';
  if (a === null) return 'pack-quantized';
  if (q.weights.symmetric) return 'int-quantized';
  throw new ReasonedError(
    'unsupported-output-scheme',
    `compressed-tensors output writes int weights with input activations (int-quantized) for symmetric weights only; found asymmetric ${q.weights.num_bits}-bit weights with ${a.num_bits}-bit activations`,
  );
}

/** a float32 tensor in the model's dtype for storage */
export function toModelDtype(t: Tensor<'float32'>, dtype: 'float32' | 'bfloat16' | 'float16'): Tensor {
  if (dtype === 'bfloat16') return tensor('bfloat16', t.dims, toBfloat16(t.data));
  if (dtype === 'float16') return tensor('float16', t.dims, toFloat16(t.data));
  return t;
}

const bytesOfCodes = (codes: Int8Array): Uint8Array => new Uint8Array(codes.buffer, codes.byteOffset, codes.length);

/** the scale as compressed-tensors shapes it: [1] for strategy tensor */
function scaleTensor(q: QuantizedModule): Tensor<'float32'> {
  return q.weights.strategy === 'tensor' ? tensor('float32', [1], q.scale.data) : q.scale;
}

function floatTensors(name: string, q: QuantizedModule, format: CtFormat, dtype: 'float32' | 'bfloat16' | 'float16'): [string, Tensor][] {
  const [rows, cols] = q.codes.dims as [number, number];
  if (format === 'float-quantized' || format === 'naive-quantized') {
    return [[`${name}.weight`, tensor('float8e4m3fn', [rows, cols], bytesOfCodes(q.codes.data))], [`${name}.weight_scale`, toModelDtype(scaleTensor(q), dtype)]];
  }
  const packed: [string, Tensor] = [`${name}.weight_packed`, tensor('uint8', [rows, cols / 2], packFp4(q.codes.data, rows, cols))];
  if (format === 'mxfp4-pack-quantized') return [packed, [`${name}.weight_scale`, tensor('uint8', q.scale.dims, Uint8Array.from(q.scale.data, mxScaleByteOf))]];
  if (!q.globalScale) throw new Error(`${name}: NVFP4 weights without their global scale`);
  return [packed, [`${name}.weight_scale`, tensor('float8e4m3fn', q.scale.dims, encodeFp8E4m3Array(q.scale.data))], [`${name}.weight_global_scale`, q.globalScale]];
}

/** the compressed tensors of one quantized module's weight, by full tensor name */
export function compressModule(name: string, q: QuantizedModule, dtype: 'float32' | 'bfloat16' | 'float16'): [string, Tensor][] {
  const [rows, cols] = q.codes.dims as [number, number];
  const bits = q.weights.num_bits;
  const format = formatOf(q);
  if (q.weights.type === 'float') return floatTensors(name, q, format, dtype);
  const scale = toModelDtype(q.scale, dtype);
  if (format === 'int-quantized') return [[`${name}.weight`, q.codes], [`${name}.weight_scale`, scale]];
  const out: [string, Tensor][] = [
    [`${name}.weight_packed`, tensor('int32', [rows, Math.ceil((cols * bits) / 32)], packToInt32(q.codes.data, rows, cols, bits))],
    [`${name}.weight_scale`, scale],
    [`${name}.weight_shape`, tensor('int64', [2], BigInt64Array.of(BigInt(rows), BigInt(cols)))],
  ];
  if (!q.weights.symmetric) {
    if (!q.zeroPoint) throw new Error(`${name}: asymmetric quantization without zero points`);
    const groups = q.zeroPoint.dims[1] as number;
    out.push([`${name}.weight_zero_point`, tensor('int32', [Math.ceil((rows * bits) / 32), groups], packZeroPoints(q.zeroPoint.data, rows, groups, bits))]);
  }
  if (q.gIdx) out.push([`${name}.weight_g_idx`, q.gIdx]);
  return out;
}

/**
 * The static input ranges of a module, by full tensor name: `input_scale` (FP8, model dtype) and
 * `input_global_scale` (NVFP4, float32), from the layer tensors of the same local names.
 */
export function compressInputScales(name: string, q: ModuleQuant, tensors: Readonly<Record<string, Tensor<'float32'>>>, local: string, dtype: 'float32' | 'bfloat16' | 'float16'): [string, Tensor][] {
  const out: [string, Tensor][] = [];
  const scale = tensors[`${local}.input_scale`];
  const global = tensors[`${local}.input_global_scale`];
  if (q.input_activations && scale) out.push([`${name}.input_scale`, toModelDtype(scale, dtype)]);
  if (q.input_activations && global) out.push([`${name}.input_global_scale`, global]);
  return out;
}

const argsKey = (q: ModuleQuant): string => JSON.stringify([q.weights, q.input_activations]);

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(Object.keys(v as object).sort().map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]));
}

/**
 * `quantization_config` for modules (full name → quant): one config group per distinct args; a single
 * group targets `Linear` (everything else is in `ignore`), several groups list their modules by name.
 */
export function quantizationConfig(modules: ReadonlyMap<string, ModuleQuant>, ignore: readonly string[]): Record<string, unknown> {
  const groups = new Map<string, { q: ModuleQuant; names: string[] }>();
  for (const [name, q] of modules) {
    const k = argsKey(q);
    const g = groups.get(k) ?? { q, names: [] };
    g.names.push(name);
    groups.set(k, g);
  }
  const formats = new Set([...groups.values()].map((g) => formatOf(g.q)));
  const format = formats.size === 1 ? [...formats][0]! : 'mixed-precision';
  const config_groups: Record<string, unknown> = {};
  [...groups.values()].forEach((g, i) => {
    const targets = groups.size === 1 ? ['Linear'] : g.names;
    config_groups[`group_${i}`] = toCompressedTensorsScheme({ ...g.q, targets, output_activations: null }, formatOf(g.q));
  });
  return sortKeys({
    config_groups,
    format,
    ignore: [...ignore],
    kv_cache_scheme: null,
    quant_method: 'compressed-tensors',
    quantization_status: 'compressed',
    sparsity_config: {},
    transform_config: {},
    version: formats.has('mxfp4-pack-quantized') ? MXFP4_VERSION : COMPRESSED_TENSORS_VERSION,
  }) as Record<string, unknown>;
}
