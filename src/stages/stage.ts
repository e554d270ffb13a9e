// What a stage kind declares (STYLE.md §3, §9.4): whether it needs calibration data, whether it quantizes, and
// how it expands into steps. The planner reads these declarations and never branches on the kind.

import { assignSchemes } from '../algo/targets.js';
import { resolveScheme, SchemeError, type QuantArgs, type QuantScheme, type SchemeStage } from '../quant/scheme.js';
import type { Json } from '../cache/key.js';
import { errorAt, warningAt, type Diagnostic, type Location } from '../diag/diagnostic.js';
import type { PlanBuilder } from '../plan/builder.js';
import type { StepId } from '../plan/types.js';
import type { JsonPath, StageConfig, StageKind } from '../recipe/types.js';
import type { CalibrationConfig, QuantizingParams } from '../recipe/types.js';

export interface ModuleQuantParams {
  weights: QuantArgs;
  input_activations: QuantArgs | null;
}

export interface StageContext {
  b: PlanBuilder;
  /** 1-based position in the recipe */
  index: number;
  /** step id prefix, e.g. `stage2.gptq` */
  prefix: string;
  /** display group, e.g. `stage 2: gptq` */
  group: string;
  /** the stage's YAML node */
  origin: Location;
  /** where a field of this stage was written */
  locate(path: JsonPath): Location;
  calibration: CalibrationConfig | undefined;
  diagnostics: Diagnostic[];
}

export interface StageDef<S extends StageConfig = StageConfig> {
  kind: StageKind;
  needsCalibration(stage: S): boolean;
  /** whether the stage leaves quantized weights (a smoothing-only stage needs a quantizing stage after it) */
  quantizes(stage: S): boolean;
  expand(stage: S, ctx: StageContext): void;
}

/**
 * Resolve `scheme`/`config_groups` with `targets`/`ignore` against the model's modules: per decoder layer,
 * the quantization args of each targeted Linear (local name). Unmatched patterns become warnings; schemes
 * compressed-tensors rejects become errors at the stage.
 */
export function assignModules(stage: QuantizingParams & { observer?: string }, ctx: StageContext): Record<string, ModuleQuantParams>[] | undefined {
  let schemes: QuantScheme[];
  try {
    schemes = resolveScheme(stage as SchemeStage);
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
  const perLayer: Record<string, ModuleQuantParams>[] = Array.from({ length: ctx.b.config.numLayers }, () => ({}));
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

/** params as JSON (QuantArgs are plain data) */
export const json = (v: unknown): Json => v as Json;

/**
 * One step per decoder layer reading that layer's state as the previous stage left it; `make` adds params and
 * inputs (it gets the step planned for the layer before, for stages whose steps chain their activations).
 * Afterwards the stage's steps are the layers' states.
 */
export function perLayerSteps(
  ctx: StageContext,
  kind: string,
  make: (layer: number, previous: StepId | undefined) => { params: Json; inputs?: Record<string, StepId | undefined>; id?: string },
): StepId[] {
  const out: StepId[] = [];
  for (let l = 0; l < ctx.b.config.numLayers; l++) {
    const { params, inputs, id } = make(l, out[l - 1]);
    out.push(
      ctx.b.add({
        id: id ?? `${ctx.prefix}/layer.${l}`,
        kind,
        params: { layer: l, ...(params as Record<string, Json>) },
        inputs: { state: ctx.b.state[l], ...inputs },
        readsModel: true,
        origin: ctx.origin,
        group: ctx.group,
      }),
    );
  }
  out.forEach((id, l) => (ctx.b.state[l] = id));
  ctx.b.stageLayers.set(ctx.index, out);
  return out;
}
