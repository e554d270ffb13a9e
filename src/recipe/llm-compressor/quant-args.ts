// llm-compressor's quantization parameters in quantforge's form:
//
// - `scheme: W4A16` stays a preset name (compressed-tensors names match case-insensitively; INT8 is its
//   alias of W8A8). `scheme: {W4A16: [targets]}` with one preset becomes `scheme` + `targets`; with several
//   presets it becomes `config_groups` (group_0, group_1, ... as llm-compressor names them), each preset
//   spelled out as compressed-tensors' quant_scheme.py defines it.
// - `config_groups` args are completed as compressed-tensors' QuantizationArgs validator completes them
//   (quantforge's schema wants num_bits and strategy written): num_bits defaults to 8, the strategy follows
//   from group_size (none: tensor, -1: channel, > 0: group); strings are lower-cased; `actorder: true|false`,
//   `weight`, `dynamic` become group|null, static, group; a dynamic argument's observer is dropped.
// - Floating-point args (FP8, NVFP4, MXFP4: type float, block_structure, dynamic "local") pass through;
//   scale_dtype / zp_dtype are accepted only as null (quantforge stores each format's scales in its own dtype),
//   and fields quantforge has no counterpart for are refused.

import { isMap, isScalar, isSeq, type Node, type Scalar, type YAMLMap, type YAMLSeq } from 'yaml';
import type { ConvertContext } from './context.js';
import { schemePresets } from './modifiers.js';
import { deref, keyName, mapAt, put, scalarAt, seqAt, type SourceRange } from './nodes.js';

const INT8_TOKEN = { num_bits: 8, type: 'int', symmetric: true, strategy: 'token', dynamic: true };
const FP8_WEIGHTS = { num_bits: 8, type: 'float', symmetric: true };
const NVFP4_WEIGHTS = { num_bits: 4, type: 'float', symmetric: true, strategy: 'tensor_group', group_size: 16 };
const MXFP4_WEIGHTS = { num_bits: 4, type: 'float', symmetric: true, strategy: 'group', group_size: 32 };
/**
 * compressed-tensors' presets that quantforge implements (quant_scheme.py), spelled as a recipe's config
 * group writes them (the schema's observers are minmax and mse: static activation ranges are the max over
 * every calibration token either way). src/quant/scheme.ts PRESET_SCHEMES holds the same presets.
 */
const PRESET_ARGS: Readonly<Record<string, { weights: Record<string, unknown>; input_activations?: Record<string, unknown> }>> = {
  W4A16: { weights: { num_bits: 4, type: 'int', symmetric: true, strategy: 'group', group_size: 128 } },
  W4A16_ASYM: { weights: { num_bits: 4, type: 'int', symmetric: false, strategy: 'group', group_size: 128 } },
  W8A16: { weights: { num_bits: 8, type: 'int', symmetric: true, strategy: 'channel' } },
  W8A8: { weights: { num_bits: 8, type: 'int', symmetric: true, strategy: 'channel' }, input_activations: INT8_TOKEN },
  W4A8: { weights: { num_bits: 4, type: 'int', symmetric: true, strategy: 'group', group_size: 128 }, input_activations: INT8_TOKEN },
  FP8: { weights: { ...FP8_WEIGHTS, strategy: 'tensor' }, input_activations: { ...FP8_WEIGHTS, strategy: 'tensor', dynamic: false } },
  FP8_DYNAMIC: { weights: { ...FP8_WEIGHTS, strategy: 'channel' }, input_activations: { ...FP8_WEIGHTS, strategy: 'token', dynamic: true } },
  FP8_BLOCK: {
    weights: { ...FP8_WEIGHTS, strategy: 'block', block_structure: [128, 128] },
    input_activations: { ...FP8_WEIGHTS, strategy: 'group', group_size: 128, dynamic: true },
  },
  NVFP4A16: { weights: NVFP4_WEIGHTS },
  NVFP4: { weights: NVFP4_WEIGHTS, input_activations: { ...NVFP4_WEIGHTS, dynamic: 'local' } },
  MXFP4A16: { weights: MXFP4_WEIGHTS },
  MXFP4: { weights: MXFP4_WEIGHTS, input_activations: { ...MXFP4_WEIGHTS, dynamic: true } },
};
const ALIASES: Readonly<Record<string, string>> = { INT8: 'W8A8' };
/** weight observers that compute what quantforge's minmax / mse compute on a weight */
const WEIGHT_OBSERVERS: Readonly<Record<string, string>> = { memoryless: 'minmax', memoryless_minmax: 'minmax', static_minmax: 'minmax', memoryless_mse: 'mse' };
export const QUANT_ARG_KEYS = ['num_bits', 'type', 'symmetric', 'group_size', 'strategy', 'block_structure', 'dynamic', 'actorder', 'observer', 'observer_kwargs'];

function supportedSchemes(): string {
  return `${schemePresets().join(', ')} (INT8 = W8A8)`;
}

/** a preset name as quantforge writes it, or undefined (after reporting) when quantforge lacks it */
function presetName(ctx: ConvertContext, node: Node): string | undefined {
  const raw = isScalar(node) ? node.value : undefined;
  if (typeof raw !== 'string') {
    ctx.invalid(node, 'a scheme must be a preset name such as W4A16, or {PRESET: [targets]}');
    return undefined;
  }
  const upper = raw.toUpperCase();
  const name = ALIASES[upper] ?? upper;
  if (!schemePresets().includes(name)) {
    ctx.unsupported(node, `scheme "${raw}"; supported: ${supportedSchemes()}`);
    return undefined;
  }
  return name;
}

/** a string or a list of strings as a YAML list (llm-compressor accepts `targets: Linear`) */
export function listOf(ctx: ConvertContext, node: Node | undefined, what: string): YAMLSeq | undefined {
  if (isScalar(node) && typeof node.value === 'string') return seqAt(node.range, [node.clone() as Node]);
  if (isSeq(node)) return seqAt(node.range, node.items.map((item) => (deref(ctx.doc, item) ?? scalarAt(null, undefined)).clone() as Node));
  if (isScalar(node) && node.value === null) return undefined;
  ctx.invalid(node, `${what} must be a name or a list of names (class names such as Linear, or re: patterns)`);
  return undefined;
}

export interface SchemeForm {
  scheme?: Scalar;
  /** targets given inside `{PRESET: targets}`; they replace the modifier's targets, as in llm-compressor */
  targets?: YAMLSeq;
  config_groups?: YAMLMap;
}

export function convertScheme(ctx: ConvertContext, node: Node): SchemeForm | undefined {
  if (isScalar(node)) {
    const name = presetName(ctx, node);
    return name === undefined ? undefined : { scheme: scalarAt(name, node.range) };
  }
  if (!isMap(node)) {
    ctx.invalid(node, 'a scheme must be a preset name such as W4A16, or {PRESET: [targets]}');
    return undefined;
  }
  const entries: { name: string; key: Scalar; targets: YAMLSeq }[] = [];
  for (const pair of node.items) {
    const name = presetName(ctx, pair.key as Node);
    const targets = listOf(ctx, deref(ctx.doc, pair.value), `the targets of ${String(keyName(pair))}`);
    if (name !== undefined && targets !== undefined) entries.push({ name, key: pair.key as Scalar, targets });
  }
  if (entries.length !== node.items.length || entries.length === 0) {
    if (entries.length === node.items.length) ctx.invalid(node, 'a scheme map must name at least one preset');
    return undefined;
  }
  if (entries.length === 1) return { scheme: scalarAt(entries[0]!.name, entries[0]!.key.range), targets: entries[0]!.targets };
  const groups = mapAt(node.range);
  entries.forEach((e, i) => put(groups, `group_${i}`, e.key.range, presetGroup(e.name, e.targets, e.key.range)));
  return { config_groups: groups };
}

/** one config group spelling out a preset, its nodes placed at `range` (the preset's name in the file) */
export function presetGroup(name: string, targets: YAMLSeq, range: SourceRange, observer?: Node): YAMLMap {
  const preset = PRESET_ARGS[name];
  const group = mapAt(range);
  put(group, 'targets', targets.range, targets);
  if (!preset) return group;
  const args = (values: Record<string, unknown>, withObserver: boolean): YAMLMap => {
    const map = mapAt(range);
    for (const [k, v] of Object.entries(values)) put(map, k, range, Array.isArray(v) ? seqAt(range, v.map((x: unknown) => scalarAt(x, range))) : scalarAt(v, range));
    if (withObserver && observer) put(map, 'observer', observer.range, observer.clone() as Node);
    return map;
  };
  put(group, 'weights', range, args(preset.weights, true));
  if (preset.input_activations) put(group, 'input_activations', range, args(preset.input_activations, false));
  return group;
}

export function convertConfigGroups(ctx: ConvertContext, node: Node): YAMLMap | undefined {
  if (!isMap(node)) {
    ctx.invalid(node, 'config_groups must be a map of group name to {targets, weights, input_activations}');
    return undefined;
  }
  const out = mapAt(node.range);
  for (const pair of node.items) {
    const name = keyName(pair) ?? '';
    const group = deref(ctx.doc, pair.value);
    if (!isMap(group)) {
      ctx.invalid(group ?? (pair.key as Node), `config group "${name}" must be a map with targets and weights`);
      continue;
    }
    const converted = mapAt(group.range);
    for (const p of group.items) {
      const key = keyName(p) ?? '';
      const value = deref(ctx.doc, p.value);
      const range = (p.key as Node).range;
      if (key === 'targets') {
        const list = listOf(ctx, value, `targets of config group "${name}"`);
        if (list) put(converted, key, range, list);
      } else if (key === 'weights' || key === 'input_activations') {
        if (isScalar(value) && value.value === null) continue;
        const args = convertQuantArgs(ctx, value, `config_groups.${name}.${key}`, key === 'weights');
        if (args) put(converted, key, range, args);
      } else if (key === 'output_activations') {
        if (!(isScalar(value) && value.value === null)) ctx.unsupported(p.key as Node, `output_activations in config group "${name}" (quantization of layer outputs)`);
      } else if (key === 'format') {
        continue; // quantforge picks the compressed-tensors format from the scheme
      } else {
        ctx.unsupported(p.key as Node, `"${key}" in config group "${name}"; supported: targets, weights, input_activations`);
      }
    }
    put(out, name, (pair.key as Node).range, converted);
  }
  return out;
}

function convertQuantArgs(ctx: ConvertContext, node: Node | undefined, where: string, weights: boolean): YAMLMap | undefined {
  if (!isMap(node)) {
    ctx.invalid(node, `${where} must be a map of quantization arguments (num_bits, type, symmetric, strategy ...)`);
    return undefined;
  }
  const out = mapAt(node.range);
  const given = new Map<string, Node>();
  for (const pair of node.items) given.set(keyName(pair) ?? '', deref(ctx.doc, pair.value) ?? scalarAt(null, undefined));
  const dynamic = scalarOf(given.get('dynamic')) === true;
  const groupSize = scalarOf(given.get('group_size'));
  for (const pair of node.items) {
    const key = keyName(pair) ?? '';
    const value = given.get(key)!;
    const keyRange = (pair.key as Node).range;
    const raw = scalarOf(value);
    if (key === 'scale_dtype' || key === 'zp_dtype') {
      if (raw !== null) ctx.unsupported(pair.key as Node, `${key} in ${where} (quantforge stores each format's scales in its own dtype); supported: null`);
    } else if (key === 'block_structure' && raw === null) {
      continue;
    } else if (key === 'type') {
      const type = typeof raw === 'string' ? raw.toLowerCase() : raw;
      if (type !== 'int' && type !== 'float') ctx.unsupported(value, `type ${JSON.stringify(raw)} in ${where}; supported: int, float`);
      else put(out, key, keyRange, scalarAt(type, value.range));
    } else if (key === 'dynamic' && typeof raw === 'string') {
      if (raw.toLowerCase() === 'local') put(out, key, keyRange, scalarAt('local', value.range));
      else ctx.unsupported(value, `dynamic "${raw}" in ${where}; supported: true, false, "local"`);
    } else if (key === 'group_size' && (raw === -1 || raw === null)) {
      continue; // -1 means per channel; the strategy says so below
    } else if (key === 'strategy' && typeof raw === 'string') {
      put(out, key, keyRange, scalarAt(raw.toLowerCase(), value.range));
    } else if (key === 'actorder') {
      put(out, key, keyRange, actorderNode(value));
    } else if (key === 'observer') {
      if (!dynamic) put(out, key, keyRange, weights ? weightObserverNode(value) : (value.clone() as Node));
    } else if (QUANT_ARG_KEYS.includes(key)) {
      put(out, key, keyRange, value.clone() as Node);
    } else {
      ctx.unsupported(pair.key as Node, `"${key}" in ${where}; supported: ${[...QUANT_ARG_KEYS, 'scale_dtype: null', 'zp_dtype: null'].join(', ')}`);
    }
  }
  if (!given.has('num_bits')) out.items.unshift(...fill('num_bits', 8, node.range));
  if (typeof scalarOf(given.get('strategy')) !== 'string') {
    const strategy = groupSize === -1 ? 'channel' : typeof groupSize === 'number' && groupSize > 0 ? 'group' : 'tensor';
    out.items = out.items.filter((p) => keyName(p) !== 'strategy');
    out.items.push(...fill('strategy', strategy, node.range));
  }
  return out;
}

function fill(key: string, value: unknown, range: SourceRange): YAMLMap['items'] {
  const map = mapAt(range);
  put(map, key, range, scalarAt(value, range));
  return map.items;
}

function scalarOf(node: Node | undefined): unknown {
  return isScalar(node) ? node.value : undefined;
}

/** compressed-tensors' ActivationOrdering spellings in quantforge's: static | group | null */
export function actorderNode(node: Node): Node {
  const raw = scalarOf(node);
  let value: unknown = raw;
  if (raw === true) value = 'group';
  else if (raw === false) value = null;
  else if (typeof raw === 'string') {
    const lower = raw.toLowerCase();
    value = lower === 'weight' ? 'static' : lower === 'dynamic' ? 'group' : lower;
  }
  return isScalar(node) ? scalarAt(value, node.range) : (node.clone() as Node);
}

/** a weight observer as quantforge names it (memoryless_minmax and static_minmax compute minmax on a weight) */
export function weightObserverNode(node: Node): Node {
  const raw = scalarOf(node);
  if (typeof raw !== 'string') return node.clone() as Node;
  const lower = raw.toLowerCase();
  return scalarAt(WEIGHT_OBSERVERS[lower] ?? lower, node.range);
}
