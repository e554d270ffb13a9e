// config.json's `quantization_config` of a compressed-tensors checkpoint, parsed strictly: every field the
// reader's unpacking and dequantization depend on is checked, so a malformed or hostile config is a named
// error naming config.json and the field, never a RangeError or garbage weights. The tensors are checked
// against it in compressed-tensors-source.ts.

import { describeValue, InputError } from '../errors.js';
import { matchesName, TargetError } from '../algo/targets.js';
import type { QuantArgs, QuantStrategy } from '../algo/scheme.js';

export type CompressedTensorsErrorReason = 'quantization-config-invalid' | 'quantized-tensor-invalid';

export class CompressedTensorsError extends InputError<CompressedTensorsErrorReason> {}

export interface ConfigGroup {
  targets: string[];
  weights: QuantArgs | null;
  input_activations: QuantArgs | null;
}

export interface QuantizationConfig {
  quant_method: 'compressed-tensors';
  config_groups: Record<string, ConfigGroup>;
  ignore: string[];
}

const STRATEGIES: readonly QuantStrategy[] = ['tensor', 'channel', 'group', 'token'];

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
  const config_groups: Record<string, ConfigGroup> = {};
  for (const [name, g] of Object.entries(groups)) {
    const at = `config_groups.${name}`;
    if (!isObject(g)) throw bad(at, `is ${found(g)}; expected an object with targets, weights, input_activations`);
    const targets = g['targets'];
    if (!isStringList(targets) || targets.length === 0) throw bad(`${at}.targets`, `is ${found(targets)}; expected a non-empty list of class names, module names or "re:" patterns`);
    targets.forEach((p, i) => checkPattern(p, () => bad(`${at}.targets[${i}]`, `is ${found(p)}, not a valid pattern`)));
    const weights = quantArgs(g['weights'], `${at}.weights`, bad, 'weights');
    const input_activations = quantArgs(g['input_activations'], `${at}.input_activations`, bad, 'activations');
    config_groups[name] = { targets, weights, input_activations };
  }
  return { quant_method: 'compressed-tensors', config_groups, ignore };
}

function quantArgs(v: unknown, at: string, bad: (field: string, what: string) => Error, role: 'weights' | 'activations'): QuantArgs | null {
  if (v === undefined || v === null) return null;
  if (!isObject(v)) throw bad(at, `is ${found(v)}; expected quantization args or null`);
  const bits = v['num_bits'];
  if (!Number.isInteger(bits) || (bits as number) < 1 || (bits as number) > 8) throw bad(`${at}.num_bits`, `is ${found(bits)}; expected an integer from 1 to 8`);
  const type = v['type'] ?? 'int';
  if (type !== 'int') throw bad(`${at}.type`, `is ${found(type)}; quantforge reads integer quantization only ("int")`);
  const symmetric = v['symmetric'] ?? true;
  if (typeof symmetric !== 'boolean') throw bad(`${at}.symmetric`, `is ${found(symmetric)}; expected true or false`);
  const groupSize = v['group_size'] ?? null;
  const strategy = v['strategy'] ?? (groupSize === null ? (role === 'weights' ? 'channel' : 'token') : 'group');
  if (!STRATEGIES.includes(strategy as QuantStrategy) || (role === 'weights' && strategy === 'token')) {
    const allowed = role === 'weights' ? 'tensor, channel, group' : STRATEGIES.join(', ');
    throw bad(`${at}.strategy`, `is ${found(strategy)}; expected one of ${allowed}`);
  }
  if (strategy === 'group' && !(Number.isSafeInteger(groupSize) && (groupSize as number) > 0)) {
    throw bad(`${at}.group_size`, `is ${found(groupSize)}; strategy "group" needs a positive integer group_size`);
  }
  const dynamic = v['dynamic'] ?? false;
  if (typeof dynamic !== 'boolean' && dynamic !== 'local') throw bad(`${at}.dynamic`, `is ${found(dynamic)}; expected true or false`);
  if (role === 'weights' && dynamic !== false) throw bad(`${at}.dynamic`, 'is set; stored weights need static (dynamic: false) quantization');
  const actorder = v['actorder'] ?? null;
  if (actorder !== null && typeof actorder !== 'string' && typeof actorder !== 'boolean') throw bad(`${at}.actorder`, `is ${found(actorder)}; expected null, "static", "group" or "weight"`);
  return {
    ...(v as object),
    num_bits: bits as number,
    type: 'int',
    symmetric,
    group_size: strategy === 'group' ? (groupSize as number) : null,
    strategy: strategy as QuantStrategy,
    dynamic: dynamic === true,
  } as QuantArgs;
}

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
