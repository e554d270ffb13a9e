// The parameters every quantizing stage shares (gptq, awq, autoround, rtn: llm-compressor's QuantizationMixin)
// and their resolution against the model: which decoder-layer Linear gets which quantization args.

import { assignSchemes } from '../algo/targets.js';
import { errorAt, warningAt } from '../diag/diagnostic.js';
import type { ModuleQuant } from '../quant/module-quant.js';
import { resolveScheme, SchemeError, type ConfigGroup, type QuantScheme, type SchemeName } from '../quant/scheme.js';
import type { ParamKeys, StageContext } from './stage.js';

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

