// The parameters every quantizing stage shares (gptq, awq, autoround, rtn: llm-compressor's QuantizationMixin)
// and their resolution against the model: which decoder-layer Linear gets which quantization args.

import { observerKind } from '../quant/quant-args.js';
import { ggufTypeOf } from '../quant/gguf-scheme.js';
import { GRAPH_BLOCK_TYPES, isGraphBlockType } from '../graphs/gguf-fake-quant.js';
import { assignSchemes } from '../algo/targets.js';
import { errorAt, warningAt } from '../diag/diagnostic.js';
import { staticInputTensor, type ModuleQuant } from '../quant/module-quant.js';
import { resolveConfigGroups, resolveScheme, SchemeError, type ConfigGroup, type QuantScheme, type SchemeName } from '../quant/scheme.js';
import type { ParamKeys, StageCheckContext, StageContext } from './stage.js';

/** a schema-valid quantizing stage has exactly one of scheme, config_groups (awq may have neither) */
export interface QuantizingParams {
  scheme?: SchemeName;
  config_groups?: Record<string, ConfigGroup>;
  targets: string[];
  ignore: string[];
}

/** the QuantizingParams entries of a quantizing stage's `properties` */
export const QUANTIZING_PROPERTIES = { scheme: 'optional', config_groups: 'optional', targets: 'always', ignore: 'always' } as const satisfies ParamKeys<QuantizingParams>;

/**
 * Resolve `scheme`/`config_groups` with `targets`/`ignore` against the model's modules: per decoder layer,
 * the quantization args of each targeted Linear (local name). Unmatched patterns become warnings; schemes
 * compressed-tensors rejects become errors at the stage.
 */
export function assignModules(stage: QuantizingParams & { observer?: string | undefined }, ctx: StageContext): Record<string, ModuleQuant>[] | undefined {
  let schemes: QuantScheme[];
  try {
    schemes = resolveScheme(stage);
  } catch (e) {
    if (e instanceof SchemeError) {
      ctx.diagnostics.push(errorAt(e.reason, e.message, ctx.locate([stage.config_groups ? 'config_groups' : 'scheme'])));
      return undefined;
    }
    throw e;
  }
  // only Linear layers carry quantizable weights; a regex that also names norms must not select them
  const linears = ctx.b.modules.filter((m) => m.className === 'Linear');
  const { assigned, unmatchedTargets, unmatchedIgnore } = assignSchemes(linears, schemes, stage.ignore);
  for (const t of unmatchedTargets) ctx.diagnostics.push(warningAt('target-matches-nothing', `target "${t}" matches no module of the model`, ctx.locate(['targets'])));
  for (const t of unmatchedIgnore) ctx.diagnostics.push(warningAt('ignore-matches-nothing', `ignore pattern "${t}" matches no module of the model`, ctx.locate(['ignore'])));
  const perLayer: Record<string, ModuleQuant>[] = Array.from({ length: ctx.b.config.numLayers }, () => ({}));
  const twice: string[] = [];
  for (const a of assigned) {
    if (a.scheme.weights === null) continue;
    const layer = ctx.b.modules.find((m) => m.name === a.module.name)?.layer ?? null;
    if (layer === null) {
      ctx.diagnostics.push(
        errorAt('unsupported-target', `module "${a.module.name}" is outside the decoder layers; quantforge quantizes decoder-layer Linears only (add it to ignore)`, ctx.locate(['targets'])),
      );
      continue;
    }
    const earlier = ctx.b.quantizedBy.get(a.module.name);
    if (earlier !== undefined) {
      twice.push(`${a.module.name} (stage ${earlier})`);
      continue;
    }
    ctx.b.quantizedBy.set(a.module.name, ctx.index);
    const local = a.module.name.slice(ctx.b.arch.layerPrefix(layer).length);
    perLayer[layer]![local] = { weights: a.scheme.weights, input_activations: a.scheme.input_activations };
    ctx.b.moduleQuant.set(a.module.name, perLayer[layer]![local]!);
  }
  if (twice.length > 0) {
    const more = twice.length > 3 ? ` and ${twice.length - 3} more` : '';
    ctx.diagnostics.push(
      errorAt('quantized-twice', `modules already quantized by an earlier stage: ${twice.slice(0, 3).join(', ')}${more}; a module is quantized once (use ignore)`, ctx.origin),
    );
    return undefined;
  }
  if (perLayer.every((m) => Object.keys(m).length === 0) && ctx.diagnostics.every((d) => d.severity !== 'error')) {
    ctx.diagnostics.push(errorAt('nothing-to-quantize', `${ctx.group} selects no Linear module to quantize`, ctx.locate(['targets'])));
  }
  return perLayer;
}


/** why a method cannot quantize with a config group's args; undefined when it can (README's method × scheme table) */
export type SchemeRule = (scheme: QuantScheme) => string | undefined;

/** every method: the mse observer's shrink search scores integer grids only */
export const MINMAX_FOR_FLOAT: SchemeRule = (s) =>
  s.weights?.type === 'float' && observerKind(s.weights.observer) === 'mse' ? 'the mse observer searches integer grids; float weights take the minmax observer' : undefined;

/** methods whose in-graph quantizer is integer min-max (AWQ's candidate search, AutoRound's learned rounding) */
export const intWeightsOnly = (why: string): SchemeRule => (s) => (s.weights?.type === 'float' ? `${s.weights.num_bits}-bit float weights are not supported: ${why}` : undefined);

/** methods whose in-graph quantizer has the 32-weight GGUF blocks (graphs/gguf-fake-quant.ts, graphs/autoround-gguf.ts) but not the K-quants */
export const ggufBlocksOnly = (method: string, why: string): SchemeRule => (s) => {
  const type = ggufTypeOf(s.weights);
  return type === undefined || isGraphBlockType(type) ? undefined : `GGUF ${type} blocks are quantized by rtn and gptq only (${method} takes ${GRAPH_BLOCK_TYPES.join(', ')}): ${why}`;
};

/** GGUF blocks take ggml's own qparams: an observer that would choose other ones is refused */
export const GGUF_QPARAMS: SchemeRule = (s) =>
  ggufTypeOf(s.weights) !== undefined && s.weights?.observer !== 'minmax' ? `GGUF blocks take ggml's own qparams; the "${s.weights?.observer}" observer does not apply (leave observer unset)` : undefined;

/** methods whose graphs run dynamic input quantization only (no calibrated input ranges) */
export const DYNAMIC_INPUTS_ONLY: SchemeRule = (s) =>
  s.input_activations && staticInputTensor(s.input_activations) ? 'static input ranges (FP8, NVFP4 activations) are calibrated by rtn and gptq only' : undefined;

/** the stage's config groups with the name a message shows for each (the preset's, else the group's) */
function namedGroups(stage: QuantizingParams): [string, QuantScheme][] {
  const groups = Object.entries(resolveConfigGroups(stage));
  if (typeof stage.scheme === 'string') return groups.map(([, g]) => [stage.scheme as string, g]);
  const presets = stage.scheme ? Object.keys(stage.scheme) : undefined;
  return groups.map(([name, g], i) => [presets?.[i] ?? `config group "${name}"`, g]);
}

/** a plan error at the stage's scheme for every config group a rule refuses */
export function checkSchemeRules(stage: QuantizingParams & { kind: string; observer?: string | undefined }, ctx: StageCheckContext, rules: readonly SchemeRule[]): void {
  let groups: [string, QuantScheme][];
  try {
    groups = namedGroups(stage);
  } catch {
    return; // assignModules reports what the scheme itself gets wrong
  }
  const where = ctx.locate([stage.config_groups ? 'config_groups' : 'scheme']);
  for (const [name, scheme] of groups) {
    for (const rule of rules) {
      const why = rule(scheme);
      if (why) ctx.diagnostics.push(errorAt('unsupported-method-scheme', `${stage.kind} cannot quantize with ${name}: ${why}`, where));
    }
  }
}

/** whether a group of the stage quantizes inputs with calibrated static ranges (FP8, NVFP4) */
export function hasStaticInputs(stage: QuantizingParams): boolean {
  try {
    return resolveScheme(stage).some((s) => s.weights !== null && s.input_activations !== null && staticInputTensor(s.input_activations) !== undefined);
  } catch {
    return false;
  }
}
