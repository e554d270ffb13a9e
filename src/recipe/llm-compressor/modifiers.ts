// The llm-compressor modifiers quantforge imports, and what becomes of each of their parameters. This
// table is the mapping the README documents. A parameter is
//
//   same     copied under the same name; the stage's JSON Schema checks its value
//   convert  rewritten into quantforge's form (scheme, targets, config_groups, mappings, actorder, observers)
//   ignore   dropped: it does not change what is computed (a device, memory or speed setting, a label)
//   noop     accepted only with the values that change nothing (start: -1); any other value is refused
//   refuse   refused with a reason and what to write instead
//
// A parameter not in the table is taken as `same` when the stage's schema has it (quantforge's own names,
// e.g. autoround's `minmax_lr`), and refused otherwise.

import { recipeValidator, stageValidator } from '../schemas.js';

export type ParamRule =
  | { readonly rule: 'same' }
  | { readonly rule: 'convert' }
  | { readonly rule: 'ignore'; readonly reason: string }
  | { readonly rule: 'noop'; readonly values: readonly unknown[]; readonly reason: string }
  | { readonly rule: 'refuse'; readonly reason: string };

export interface ModifierSpec {
  /** the quantforge stage kind it becomes: a kind the recipe schema lists (schemas.ts `stageKinds`) */
  readonly kind: string;
  /** takes scheme / config_groups / targets / ignore (llm-compressor's QuantizationMixin) */
  readonly quantizing: boolean;
  readonly params: Readonly<Record<string, ParamRule>>;
}

const same: ParamRule = { rule: 'same' };
const convert: ParamRule = { rule: 'convert' };
const ignore = (reason: string): ParamRule => ({ rule: 'ignore', reason });
const noop = (values: readonly unknown[], reason: string): ParamRule => ({ rule: 'noop', values, reason });
const refuse = (reason: string): ParamRule => ({ rule: 'refuse', reason });

const ONE_SHOT = 'quantforge runs one-shot, with no training schedule';

/** every modifier (llm-compressor's Modifier base class) */
const BASE: Record<string, ParamRule> = {
  index: ignore('stages run in the order the recipe lists them'),
  group: ignore('modifier groups do not change what is computed'),
  start: noop([null, -1, 0], ONE_SHOT),
  end: noop([null, -1], ONE_SHOT),
  update: noop([null], ONE_SHOT),
};

/** modifiers that quantize (llm-compressor's QuantizationMixin) */
const QUANTIZATION: Record<string, ParamRule> = {
  scheme: convert,
  targets: convert,
  ignore: convert,
  config_groups: convert,
  weight_observer: convert,
  observer: convert,
  kv_cache_scheme: noop([null], 'KV-cache quantization'),
  input_observer: noop([null], 'observers for activation quantization'),
  output_observer: noop([null], 'output activation quantization'),
  bypass_divisibility_checks: ignore('quantforge quantizes widths that are not a multiple of the group size (a partial last group) with no check to bypass'),
};

/** one calibration pass per decoder layer is how quantforge always works */
const SEQUENTIAL = {
  sequential_targets: ignore('quantforge always calibrates one decoder layer at a time'),
  num_calibration_steps: refuse('set calibration.samples instead'),
};

export const MODIFIERS: Readonly<Record<string, ModifierSpec>> = {
  QuantizationModifier: { kind: 'rtn', quantizing: true, params: { ...BASE, ...QUANTIZATION } },
  GPTQModifier: {
    kind: 'gptq',
    quantizing: true,
    params: {
      ...BASE,
      ...QUANTIZATION,
      ...SEQUENTIAL,
      block_size: same,
      dampening_frac: same,
      actorder: convert,
      offload_hessians: same,
      sequential_update: ignore('deprecated in llm-compressor; GPTQ is always sequential'),
    },
  },
  AWQModifier: {
    kind: 'awq',
    quantizing: true,
    params: {
      ...BASE,
      ...QUANTIZATION,
      ...SEQUENTIAL,
      mappings: convert,
      duo_scaling: same,
      n_grid: same,
      offload_device: ignore('a device placement setting'),
    },
  },
  SmoothQuantModifier: {
    kind: 'smoothquant',
    quantizing: false,
    params: {
      ...BASE,
      ...SEQUENTIAL,
      smoothing_strength: same,
      mappings: convert,
      ignore: convert,
      calibration_function: noop([null], 'a Python calibration function'),
      algorithm: noop(['smoothquant'], 'logarithmic equalization'),
    },
  },
  AutoRoundModifier: {
    kind: 'autoround',
    quantizing: true,
    params: {
      ...BASE,
      ...QUANTIZATION,
      ...SEQUENTIAL,
      iters: same,
      batch_size: same,
      lr: same,
      enable_torch_compile: ignore('a PyTorch compilation switch'),
      device_ids: ignore('a device placement setting'),
      disable_opt_rtn: ignore("only matters with iters: 0, where quantforge's AutoRound is plain round-to-nearest (as with disable_opt_rtn: true)"),
    },
  },
};

export const MODIFIER_NAMES = Object.keys(MODIFIERS);

const stageProperties = new Map<string, readonly string[]>();

/** the parameters a stage kind's JSON Schema defines, `kind` excepted */
function schemaParams(kind: string): readonly string[] {
  let names = stageProperties.get(kind);
  if (!names) {
    const schema = stageValidator(kind).schema as { properties?: Record<string, unknown> };
    names = Object.keys(schema.properties ?? {}).filter((n) => n !== 'kind');
    stageProperties.set(kind, names);
  }
  return names;
}

/** the rule for one parameter of a modifier; undefined: not supported */
export function paramRule(spec: ModifierSpec, name: string): ParamRule | undefined {
  return spec.params[name] ?? (schemaParams(spec.kind).includes(name) ? same : undefined);
}

/** the parameters a modifier carries over (those it accepts only to drop are documented, not listed) */
export function supportedParams(spec: ModifierSpec): string[] {
  const names = new Set([...Object.keys(spec.params), ...schemaParams(spec.kind)]);
  return [...names].filter((n) => {
    const rule = paramRule(spec, n)?.rule;
    return rule === 'same' || rule === 'convert';
  });
}

/** every parameter a modifier accepts, for "did you mean" */
export function acceptedParams(spec: ModifierSpec): string[] {
  return [...new Set([...Object.keys(spec.params), ...schemaParams(spec.kind)])].filter((n) => spec.params[n]?.rule !== 'refuse');
}

let presets: readonly string[] | undefined;

/** the preset scheme names the recipe schema accepts (`definitions.scheme.enum`) */
export function schemePresets(): readonly string[] {
  if (!presets) {
    const schema = recipeValidator().schema as { definitions?: { scheme?: { enum?: string[] } } };
    presets = schema.definitions?.scheme?.enum ?? [];
  }
  return presets;
}
