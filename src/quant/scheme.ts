// Quantization schemes as data: the compressed-tensors presets and config groups.
// Source: compressed-tensors quantization/quant_scheme.py (PRESET_SCHEMES, 0.12.x; MXFP4A16 and MXFP4 from 0.13).
//
// A stage names a preset (`scheme: W4A16`), a `{PRESET: targets}` map, or spells out `config_groups`. The
// args of every group are completed and checked by quant-args.ts, as compressed-tensors' validator does.
// GGUF_* presets (quant/gguf-scheme.ts) are int args that also name the ggml block type they are stored in.

import { GGUF_PRESETS } from './gguf-scheme.js';
import { checkActivationArgs, invalidArgs as invalid, resolveQuantArgs, SchemeError, toCompressedTensorsArgs, type QuantArgs, type QuantArgsInput } from './quant-args.js';

export {
  elementKind,
  isMx,
  MX_GROUP_SIZE,
  OBSERVERS,
  resolveQuantArgs,
  SchemeError,
  toCompressedTensorsArgs,
  type ActOrder,
  type JsonScalar,
  type ObserverName,
  type QuantArgs,
  type QuantArgsInput,
  type QuantStrategy,
  type QuantType,
} from './quant-args.js';

export interface QuantScheme {
  readonly targets: readonly string[];
  readonly weights: QuantArgs | null;
  readonly input_activations: QuantArgs | null;
  readonly output_activations: null;
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

const tokenActivations = (num_bits: number, type = 'int'): QuantArgsInput => ({
  num_bits,
  type,
  symmetric: true,
  strategy: 'token',
  dynamic: true,
});

const fp8 = (strategy: string, more: QuantArgsInput = {}): QuantArgsInput => ({ num_bits: 8, type: 'float', symmetric: true, strategy, dynamic: false, ...more });
const fp4 = (strategy: string, group_size: number, more: QuantArgsInput = {}): QuantArgsInput => ({ num_bits: 4, type: 'float', symmetric: true, strategy, group_size, dynamic: false, ...more });

/**
 * compressed-tensors' PRESET_SCHEMES that quantforge supports (names match case-insensitively). Static
 * activation ranges use the `static_minmax` observer (the max over every calibration token), as the presets
 * of compressed-tensors ≥ 0.13 say; 0.12's default `minmax` observer is a moving average over batches.
 */
export const PRESET_SCHEMES = {
  W8A16: { weights: intWeights(8, true, null) },
  W4A16: { weights: intWeights(4, true, 128) },
  W4A16_ASYM: { weights: intWeights(4, false, 128) },
  W8A8: { weights: intWeights(8, true, null), input_activations: tokenActivations(8) },
  W4A8: { weights: intWeights(4, true, 128), input_activations: tokenActivations(8) },
  FP8: { weights: fp8('tensor'), input_activations: fp8('tensor', { observer: 'static_minmax' }) },
  FP8_DYNAMIC: { weights: fp8('channel'), input_activations: tokenActivations(8, 'float') },
  FP8_BLOCK: { weights: fp8('block', { block_structure: [128, 128] }), input_activations: fp8('group', { group_size: 128, dynamic: true }) },
  NVFP4A16: { weights: fp4('tensor_group', 16) },
  NVFP4: { weights: fp4('tensor_group', 16), input_activations: fp4('tensor_group', 16, { dynamic: 'local', observer: 'static_minmax' }) },
  MXFP4A16: { weights: fp4('group', 32) },
  MXFP4: { weights: fp4('group', 32), input_activations: fp4('group', 32, { dynamic: true }) },
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
  if (input_activations) checkActivationArgs(input_activations, `${name}.input_activations`);
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
