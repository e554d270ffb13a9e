// config.json's `quantization_config` of a compressed-tensors checkpoint, parsed strictly: every field the
// reader's unpacking and dequantization depend on is checked, so a malformed or hostile config is a named
// error naming config.json and the field, never a RangeError or garbage weights. The tensors are checked
// against it in compressed-tensors-source.ts.

import { InputError, type ModelReason } from '../diag/failure.js';
import { describeValue } from '../diag/quote.js';
import { matchesName, TargetError } from '../algo/targets.js';
import { checkActivationArgs, isMx } from '../quant/quant-args.js';
import { resolveQuantArgs, SchemeError, type QuantArgs, type QuantArgsInput, type QuantScheme } from '../quant/scheme.js';

/** a compressed-tensors checkpoint whose quantization_config, or a quantized tensor of it, is malformed */
export class CompressedTensorsError extends InputError<Extract<ModelReason, 'quantization-config-invalid' | 'quantized-tensor-invalid'>> {}

/** quantization_config as a compressed-tensors checkpoint writes it: each config group is a resolved scheme */
export interface QuantizationConfig {
  quant_method: 'compressed-tensors';
  config_groups: Record<string, QuantScheme>;
  ignore: string[];
}

/** the raw quantization_config when it declares compressed-tensors, unchecked (format detection only) */
export function declaresCompressedTensors(raw: Record<string, unknown>): boolean {
  const q = raw['quantization_config'];
  return typeof q === 'object' && q !== null && (q as Record<string, unknown>)['quant_method'] === 'compressed-tensors';
}

/** the checked quantization_config of config.json `raw` (read from `file`), or undefined when there is none */
export function parseQuantizationConfig(raw: Record<string, unknown>, file: string): QuantizationConfig | undefined {
  if (!declaresCompressedTensors(raw)) return undefined;
  const q = raw['quantization_config'] as Record<string, unknown>;
  const bad = (field: string, what: string) => new CompressedTensorsError('quantization-config-invalid', `${file}: quantization_config.${field} ${what}`, { file, field: `quantization_config.${field}` });
  const groups = q['config_groups'];
  if (!isObject(groups) || Object.keys(groups).length === 0) throw bad('config_groups', `is ${found(groups)}; expected an object of one or more groups`);
  const ignore = q['ignore'] ?? [];
  if (!isStringList(ignore)) throw bad('ignore', `is ${found(ignore)}; expected a list of module names or "re:" patterns`);
  ignore.forEach((p, i) => checkPattern(p, () => bad(`ignore[${i}]`, `is ${found(p)}, not a valid pattern`)));
  const config_groups: Record<string, QuantScheme> = {};
  for (const [name, g] of Object.entries(groups)) {
    const at = `config_groups.${name}`;
    if (!isObject(g)) throw bad(at, `is ${found(g)}; expected an object with targets, weights, input_activations`);
    const targets = g['targets'];
    if (!isStringList(targets) || targets.length === 0) throw bad(`${at}.targets`, `is ${found(targets)}; expected a non-empty list of class names, module names or "re:" patterns`);
    targets.forEach((p, i) => checkPattern(p, () => bad(`${at}.targets[${i}]`, `is ${found(p)}, not a valid pattern`)));
    const weights = quantArgs(g['weights'], `${at}.weights`, bad, 'weights');
    const input_activations = quantArgs(g['input_activations'], `${at}.input_activations`, bad, 'activations');
    config_groups[name] = { targets, weights, input_activations, output_activations: null };
  }
  return { quant_method: 'compressed-tensors', config_groups, ignore };
}

/**
 * One group's weights or input_activations: the field types are checked here (a hostile file may hold
 * anything), the rest as compressed-tensors' validator completes it (quant/quant-args.ts resolveQuantArgs).
 * Stored weights must be static, per tensor, channel, group, block (fp8) or tensor_group (NVFP4); input
 * activations must be a quantization quantforge runs at inference (checkActivationArgs).
 */
function quantArgs(v: unknown, at: string, bad: (field: string, what: string) => Error, role: 'weights' | 'activations'): QuantArgs | null {
  if (v === undefined || v === null) return null;
  if (!isObject(v)) throw bad(at, `is ${found(v)}; expected quantization args or null`);
  const typed: [string, (x: unknown) => boolean, string][] = [
    ['num_bits', (x) => Number.isInteger(x), 'an integer from 2 to 8'],
    ['type', (x) => typeof x === 'string', 'a string ("int" or "float")'],
    ['symmetric', (x) => typeof x === 'boolean', 'true or false'],
    ['group_size', (x) => x === null || Number.isSafeInteger(x), 'an integer or null'],
    ['strategy', (x) => x === null || typeof x === 'string', 'a string or null'],
    ['block_structure', (x) => x === null || (Array.isArray(x) && x.every((v) => Number.isSafeInteger(v))), 'a list [rows, cols] of integers or null'],
    ['dynamic', (x) => typeof x === 'boolean' || x === 'local', 'true or false'],
    ['actorder', (x) => x === null || typeof x === 'string' || typeof x === 'boolean', 'null, "static", "group" or "weight"'],
    ['observer', (x) => x === null || typeof x === 'string', 'an observer name or null'],
    ['observer_kwargs', (x) => isObject(x), 'an object'],
    // compressed-tensors ≥ 0.13 names the stored scale and zero-point dtypes (MXFP4: scale_dtype torch.uint8)
    ['scale_dtype', (x) => x === null || (typeof x === 'string' && TORCH_DTYPES.includes(x)), `null or one of ${TORCH_DTYPES.join(', ')}`],
    ['zp_dtype', (x) => x === null || (typeof x === 'string' && TORCH_DTYPES.includes(x)), `null or one of ${TORCH_DTYPES.join(', ')}`],
  ];
  for (const [field, ok, expected] of typed) {
    if (v[field] !== undefined && !ok(v[field])) throw bad(`${at}.${field}`, `is ${found(v[field])}; expected ${expected}`);
  }
  let args: QuantArgs;
  try {
    args = resolveQuantArgs(v as QuantArgsInput, `quantization_config.${at}`);
  } catch (e) {
    if (!(e instanceof SchemeError)) throw e;
    // resolveQuantArgs names the argument first ("num_bits 9 is not supported ..."): point at that field
    const detail = e.message.replace(`quantization_config.${at}: `, '');
    const key = /^(\w+)/.exec(detail)?.[1];
    throw bad(key !== undefined && key in v ? `${at}.${key}` : at, `is invalid (${detail})`);
  }
  if (role === 'weights' && args.dynamic) throw bad(`${at}.dynamic`, 'is set; stored weights need static (dynamic: false) quantization');
  if (role === 'weights' && args.strategy === 'token') throw bad(`${at}.strategy`, 'is "token"; expected one of tensor, channel, group, block, tensor_group');
  if (role === 'activations') {
    try {
      checkActivationArgs(args, `quantization_config.${at}`);
    } catch (e) {
      if (!(e instanceof SchemeError)) throw e;
      throw bad(at, `is not supported (${e.message.replace(`quantization_config.${at}: `, '')})`);
    }
  }
  const mxScale = (v['scale_dtype'] ?? null) as string | null;
  if (role === 'weights' && mxScale !== null && isMx(args) !== (mxScale === 'torch.uint8')) {
    throw bad(`${at}.scale_dtype`, `is ${found(mxScale)}; ${isMx(args) ? 'MXFP4 scales are stored as e8m0 bytes ("torch.uint8")' : '"torch.uint8" (e8m0 scales) is MXFP4 only'}`);
  }
  return args;
}

/** the torch dtypes compressed-tensors may name for scales and zero points */
const TORCH_DTYPES: readonly string[] = ['torch.float32', 'torch.float16', 'torch.bfloat16', 'torch.float8_e4m3fn', 'torch.uint8', 'torch.int8', 'torch.int32'];

function checkPattern(pattern: string, fail: () => Error): void {
  try {
    matchesName('', pattern);
  } catch (e) {
    if (e instanceof TargetError) throw fail();
    throw e;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isStringList(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

const found = (v: unknown): string => describeValue(v);
