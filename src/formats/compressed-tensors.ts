// compressed-tensors checkpoints (what vLLM loads), DESIGN.md §3. Per quantized Linear `m`:
//
//   pack-quantized (weight-only int4/int8):
//     m.weight_packed      int32 [out, ceil(in·b/32)]   codes + 2^(b−1), element 0 in the low bits
//     m.weight_scale       model dtype [out, groups]    (channel: [out, 1])
//     m.weight_shape       int64 [2] = [out, in]
//     m.weight_zero_point  int32 [ceil(out·b/32), groups]   asymmetric only, packed along the output dim
//     m.weight_g_idx       int32 [in]                   actorder group only
//   int-quantized (W8A8: int8 weights, dynamic per-token int8 activations):
//     m.weight             int8 [out, in]
//     m.weight_scale       model dtype [out, 1]
//
// Every other tensor is copied in the model dtype. config.json gains `quantization_config`; `ignore` lists
// the Linear modules left unquantized by their real names.

import { toCompressedTensorsScheme } from '../quant/scheme.js';
import { tensor, type Tensor } from '../tensor.js';
import { packToInt32, packZeroPoints } from './pack-quantized.js';
import type { ModuleQuant, QuantizedModule } from '../quant/module-quant.js';
import { toBfloat16, toFloat16 } from '../quant/half.js';
import { ReasonedError } from '../diag/failure.js';

export const COMPRESSED_TENSORS_VERSION = '0.12.2';

export type CtFormat = 'pack-quantized' | 'int-quantized';

export function formatOf(q: ModuleQuant): CtFormat {
  const a = q.input_activations;
  if (a === null) return 'pack-quantized';
  if (q.weights.num_bits === 8 && a.num_bits === 8 && a.dynamic && q.weights.symmetric) return 'int-quantized';
  throw new ReasonedError(
    'unsupported-output-scheme',
    `compressed-tensors output supports weight-only int4/int8 (pack-quantized) and W8A8 with symmetric weights (int-quantized); found weights ${q.weights.num_bits}-bit with ${a.num_bits}-bit activations`,
  );
}

/** a float32 tensor in the model's dtype for storage */
export function toModelDtype(t: Tensor<'float32'>, dtype: 'float32' | 'bfloat16' | 'float16'): Tensor {
  if (dtype === 'bfloat16') return tensor('bfloat16', t.dims, toBfloat16(t.data));
  if (dtype === 'float16') return tensor('float16', t.dims, toFloat16(t.data));
  return t;
}

/** the compressed tensors of one quantized module, by full tensor name */
export function compressModule(name: string, q: QuantizedModule, dtype: 'float32' | 'bfloat16' | 'float16'): [string, Tensor][] {
  const [rows, cols] = q.codes.dims as [number, number];
  const bits = q.weights.num_bits;
  const scale = toModelDtype(q.scale, dtype);
  if (formatOf(q) === 'int-quantized') return [[`${name}.weight`, q.codes], [`${name}.weight_scale`, scale]];
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
    version: COMPRESSED_TENSORS_VERSION,
  }) as Record<string, unknown>;
}
