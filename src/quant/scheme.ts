// Quantization schemes as data: the compressed-tensors presets and the QuantizationArgs defaults.
// Source: compressed-tensors quantization/quant_scheme.py (PRESET_SCHEMES) and quant_args.py (0.12.x).
//
// A stage names a preset (`scheme: W4A16`), a `{PRESET: targets}` map, or spells out `config_groups`.
// Every QuantArgs is completed exactly as compressed-tensors' validator completes it: the strategy is
// inferred from group_size, static args get observer "minmax", dynamic args get observer null, and the
// combinations compressed-tensors rejects are rejected here, with a typed error.

import { ReasonedError, type QuantReason } from '../diag/failure.js';
import { ggufArgsProblem, GGUF_PRESETS } from './gguf-scheme.js';
import type { GgufBlockTypeName } from './gguf-quantize.js';

export type QuantStrategy = 'tensor' | 'channel' | 'group' | 'token';
export type ActOrder = 'static' | 'group';
export const OBSERVERS = ['minmax', 'mse', 'memoryless', 'memoryless_minmax', 'static_minmax', 'memoryless_mse'] as const;
export type ObserverName = (typeof OBSERVERS)[number];
export type JsonScalar = string | number | boolean | null;

/** compressed-tensors QuantizationArgs, integer types only, every default filled in */
export interface QuantArgs {
  readonly num_bits: number;
  readonly type: 'int';
  readonly symmetric: boolean;
  /** columns per scale for strategy group; null otherwise */
  readonly group_size: number | null;
  readonly strategy: QuantStrategy;
  readonly block_structure: null;
  /** true: scales are computed on the fly at inference (activations); nothing is stored */
  readonly dynamic: boolean;
  /** static: GPTQ permutes columns while solving, storage unchanged; group: also stores weight_g_idx */
  readonly actorder: ActOrder | null;
  /** null exactly when dynamic (compressed-tensors drops the observer of dynamic args) */
  readonly observer: ObserverName | null;
  readonly observer_kwargs: Readonly<Record<string, JsonScalar>>;
  /** GGUF schemes only: the ggml block type whose stored qparams the weights take (quant/gguf-scheme.ts); absent otherwise */
  readonly gguf?: GgufBlockTypeName;
}

/** QuantArgs as a recipe may spell them: anything omitted takes compressed-tensors' default */
export interface QuantArgsInput {
  readonly num_bits?: number;
  readonly type?: string;
  readonly symmetric?: boolean;
  readonly group_size?: number | null;
  readonly strategy?: string | null;
  readonly block_structure?: null;
  readonly dynamic?: boolean | string;
  readonly actorder?: string | boolean | null;
  readonly observer?: string | null;
  readonly observer_kwargs?: Readonly<Record<string, JsonScalar>>;
  readonly gguf?: string;
}

export interface QuantScheme {
  readonly targets: readonly string[];
  readonly weights: QuantArgs | null;
  readonly input_activations: QuantArgs | null;
  readonly output_activations: null;
}

export class SchemeError extends ReasonedError<QuantReason> {}

const STRATEGIES: readonly QuantStrategy[] = ['tensor', 'channel', 'group', 'token'];

function invalid(where: string, message: string): SchemeError {
  return new SchemeError('invalid-quant-args', `${where}: ${message}`);
}

function resolveActOrder(value: QuantArgsInput['actorder'], where: string): ActOrder | null {
  if (value === undefined || value === null || value === false) return null;
  if (value === true) return 'group';
  const v = value.toLowerCase();
  if (v === 'group' || v === 'dynamic') return 'group';
  if (v === 'static' || v === 'weight') return 'static';
  throw invalid(where, `actorder "${value}" is not one of: static, weight, group, dynamic, true, false, null`);
}

function resolveStrategy(input: QuantArgsInput, where: string): QuantStrategy {
  const given = input.strategy?.toLowerCase();
  if (given !== undefined) {
    if (!STRATEGIES.includes(given as QuantStrategy)) {
      throw new SchemeError('unsupported-quant-args', `${where}: strategy "${input.strategy}" is not supported; expected one of: ${STRATEGIES.join(', ')}`);
    }
    return given as QuantStrategy;
  }
  const g = input.group_size;
  if (g === undefined || g === null) return 'tensor';
  if (g > 0) return 'group';
  if (g === -1) return 'channel';
  throw invalid(where, `group_size ${g} is invalid; use group_size > 0 for strategy "group" and -1 for "channel"`);
}

function ggufArgs(input: QuantArgsInput, where: string): GgufBlockTypeName {
  const problem = ggufArgsProblem(input);
  if (problem !== undefined) throw invalid(where, problem);
  return input.gguf as GgufBlockTypeName;
}

/** complete `input` as compressed-tensors' QuantizationArgs validator does; `where` names it in errors */
export function resolveQuantArgs(input: QuantArgsInput, where = 'quantization args'): QuantArgs {
  const num_bits = input.num_bits ?? 8;
  const type = (input.type ?? 'int').toLowerCase();
  if (type !== 'int') throw new SchemeError('unsupported-quant-args', `${where}: type "${input.type}" is not supported; expected "int"`);
  if (!Number.isInteger(num_bits) || num_bits < 2 || num_bits > 8) {
    throw new SchemeError('unsupported-quant-args', `${where}: num_bits ${num_bits} is not supported; expected an integer from 2 to 8`);
  }
  if (input.block_structure !== undefined && input.block_structure !== null) {
    throw new SchemeError('unsupported-quant-args', `${where}: block_structure is not supported; expected null`);
  }
  if (typeof input.dynamic === 'string') {
    throw new SchemeError('unsupported-quant-args', `${where}: dynamic "${input.dynamic}" is not supported; expected true or false`);
  }
  const strategy = resolveStrategy(input, where);
  const group_size = input.group_size ?? null;
  const dynamic = input.dynamic ?? false;
  const actorder = resolveActOrder(input.actorder, where);
  if (strategy === 'group' && (group_size === null || group_size <= 0)) {
    throw invalid(where, `strategy "group" requires a positive group_size, found ${group_size}`);
  }
  if (group_size !== null && group_size > 0 && strategy !== 'group') {
    throw invalid(where, `group_size ${group_size} requires strategy "group", found "${strategy}"`);
  }
  if (strategy === 'token' && !dynamic) throw invalid(where, 'strategy "token" requires dynamic: true');
  if (actorder !== null && strategy !== 'group') {
    throw invalid(where, `actorder "${actorder}" requires strategy "group", found "${strategy}"`);
  }
  if (dynamic && strategy === 'channel') {
    throw invalid(where, 'dynamic quantization supports strategies token, tensor and group, found "channel"');
  }
  let observer: ObserverName | null = null;
  if (!dynamic) {
    const name = input.observer ?? 'minmax';
    if (!OBSERVERS.includes(name as ObserverName)) {
      throw invalid(where, `observer "${name}" is not one of: ${OBSERVERS.join(', ')}`);
    }
    observer = name as ObserverName;
  }
  return {
    num_bits,
    type: 'int',
    symmetric: input.symmetric ?? true,
    group_size,
    strategy,
    block_structure: null,
    dynamic,
    actorder,
    observer,
    observer_kwargs: { ...(input.observer_kwargs ?? {}) },
    ...(input.gguf === undefined ? {} : { gguf: ggufArgs(input, where) }),
  };
}

/**
 * The JSON object compressed-tensors writes for `args` (QuantizationArgs.model_dump(), pydantic field
 * order). compressed-tensors writes config.json with sort_keys=True, so a byte-exact writer sorts keys.
 */
export function toCompressedTensorsArgs(args: QuantArgs): Record<string, unknown> {
  return {
    num_bits: args.num_bits,
    type: args.type,
    symmetric: args.symmetric,
    group_size: args.group_size,
    strategy: args.strategy,
    block_structure: args.block_structure,
    dynamic: args.dynamic,
    actorder: args.actorder,
    observer: args.observer,
    observer_kwargs: { ...args.observer_kwargs },
  };
}

/** one `config_groups` entry of quantization_config (QuantizationScheme.model_dump()) */
export function toCompressedTensorsScheme(scheme: QuantScheme, format: string | null = null): Record<string, unknown> {
  return {
    targets: [...scheme.targets],
    weights: scheme.weights ? toCompressedTensorsArgs(scheme.weights) : null,
    input_activations: scheme.input_activations ? toCompressedTensorsArgs(scheme.input_activations) : null,
    output_activations: null,
    format,
  };
}

interface PresetScheme {
  readonly weights: QuantArgsInput;
  readonly input_activations?: QuantArgsInput;
}

const intWeights = (num_bits: number, symmetric: boolean, group_size: number | null): QuantArgsInput => ({
  num_bits,
  type: 'int',
  symmetric,
  strategy: group_size === null ? 'channel' : 'group',
  group_size,
  dynamic: false,
});

const tokenActivations = (num_bits: number): QuantArgsInput => ({
  num_bits,
  type: 'int',
  symmetric: true,
  strategy: 'token',
  dynamic: true,
});

/** the integer presets of compressed-tensors' PRESET_SCHEMES that quantforge supports (names match case-insensitively) */
export const PRESET_SCHEMES = {
  W8A16: { weights: intWeights(8, true, null) },
  W4A16: { weights: intWeights(4, true, 128) },
  W4A16_ASYM: { weights: intWeights(4, false, 128) },
  W8A8: { weights: intWeights(8, true, null), input_activations: tokenActivations(8) },
  ...GGUF_PRESETS,
} as const satisfies Readonly<Record<string, PresetScheme>>;

/** a preset's name as a recipe's `scheme` writes it (schema/recipe.schema.json lists the same names) */
export type SchemeName = keyof typeof PRESET_SCHEMES;

export function isPresetScheme(name: string): boolean {
  return Object.hasOwn(PRESET_SCHEMES, name.toUpperCase());
}

/** the preset `name` applied to `targets`, its args completed with compressed-tensors' defaults */
export function presetScheme(name: string, targets: readonly string[]): QuantScheme {
  const preset: PresetScheme | undefined = isPresetScheme(name) ? PRESET_SCHEMES[name.toUpperCase() as SchemeName] : undefined;
  if (preset === undefined) {
    throw new SchemeError(
      'unknown-scheme',
      `Unknown preset scheme name "${name}", available names: [${Object.keys(PRESET_SCHEMES).join(', ')}]`,
    );
  }
  const upper = name.toUpperCase();
  return {
    targets: [...targets],
    weights: resolveQuantArgs(preset.weights, `${upper}.weights`),
    input_activations: preset.input_activations ? resolveQuantArgs(preset.input_activations, `${upper}.input_activations`) : null,
    output_activations: null,
  };
}

/** one `config_groups` entry as a recipe writes it; anything omitted takes compressed-tensors' default */
export interface ConfigGroup {
  readonly targets: string | readonly string[];
  readonly weights?: QuantArgsInput | null;
  readonly input_activations?: QuantArgsInput | null;
  readonly output_activations?: QuantArgsInput | null;
}

/** the quantization parameters of a stage, as llm-compressor's QuantizationMixin reads them */
export interface SchemeStage {
  /** a preset name, or `{PRESET: targets}` */
  readonly scheme?: string | Readonly<Record<string, string | readonly string[]>>;
  readonly config_groups?: Readonly<Record<string, ConfigGroup>>;
  /** targets of a preset given by name; default ["Linear"] */
  readonly targets?: string | readonly string[];
  /** replaces the weight observer of every group (llm-compressor `weight_observer`) */
  readonly observer?: string;
}

const asList = (v: string | readonly string[]): string[] => (typeof v === 'string' ? [v] : [...v]);

function withWeightObserver(scheme: QuantScheme, observer: string | undefined, where: string): QuantScheme {
  if (observer === undefined || scheme.weights === null) return scheme;
  return { ...scheme, weights: resolveQuantArgs({ ...scheme.weights, observer }, `${where}.weights`) };
}

function resolveGroup(name: string, group: ConfigGroup): QuantScheme {
  const targets = asList(group.targets ?? []);
  if (targets.length === 0) throw invalid(`config group "${name}"`, 'targets is empty; expected class names or "re:" patterns');
  if (group.output_activations) {
    throw new SchemeError('unsupported-quant-args', `config group "${name}": output_activations are not supported; expected null`);
  }
  const input_activations = group.input_activations ? resolveQuantArgs(group.input_activations, `${name}.input_activations`) : null;
  if (input_activations?.actorder) throw invalid(`${name}.input_activations`, 'actorder cannot apply to input activations');
  if (input_activations?.strategy === 'channel') {
    throw new SchemeError('unsupported-quant-args', `${name}.input_activations: strategy "channel" is not supported for activations; expected token, tensor or group`);
  }
  return {
    targets,
    weights: group.weights ? resolveQuantArgs(group.weights, `${name}.weights`) : null,
    input_activations,
    output_activations: null,
  };
}

/**
 * The config groups of a stage by name, in order: `group_0`, `group_1`... for presets, the user's names
 * for `config_groups`. Empty when the stage gives neither `scheme` nor `config_groups`.
 */
export function resolveConfigGroups(stage: SchemeStage): Record<string, QuantScheme> {
  if (stage.scheme !== undefined && stage.config_groups !== undefined) {
    throw new SchemeError('scheme-conflict', 'found both `scheme` and `config_groups`; specify exactly one of them');
  }
  const groups: Record<string, QuantScheme> = {};
  if (stage.scheme !== undefined) {
    const byPreset = typeof stage.scheme === 'string' ? { [stage.scheme]: stage.targets ?? ['Linear'] } : stage.scheme;
    Object.entries(byPreset).forEach(([name, targets], i) => {
      groups[`group_${i}`] = withWeightObserver(presetScheme(name, asList(targets)), stage.observer, name);
    });
    return groups;
  }
  for (const [name, group] of Object.entries(stage.config_groups ?? {})) {
    groups[name] = withWeightObserver(resolveGroup(name, group), stage.observer, name);
  }
  return groups;
}

/** the schemes of a stage in config-group order */
export function resolveScheme(stage: SchemeStage): QuantScheme[] {
  return Object.values(resolveConfigGroups(stage));
}
