// What a stage kind declares (STYLE.md §3, §9.4), once, in src/stages/<kind>.ts: its params (typed here,
// validated by schema/stages/<kind>.schema.json, the two compared by a test), whether it needs calibration
// data and whether it quantizes, its own cross-stage checks, and how it expands into steps. The planner reads
// these declarations and never branches on the kind.

import type { Diagnostic, Location } from '../diag/diagnostic.js';
import type { CalibrationConfig, JsonPath } from '../recipe/types.js';
import type { StepKind, StepParams } from '../steps/registry.js';
import type { StepId, StepPlan } from './step-plan.js';

/**
 * Every property of a params type, and whether a schema-valid object always has it: `always` when the schema
 * requires it or gives it a default, `optional` otherwise. A StageDef (or OutputDef) lists its params this way,
 * so adding a field to the type without listing it does not compile, and a test compares the list with the
 * schema file.
 */
export type ParamKeys<P> = { readonly [K in keyof P]-?: undefined extends P[K] ? 'optional' : 'always' };

export interface StageContext {
  b: StepPlan;
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
  /** the recipe's parallel.calibration_shards (1 when absent); only stages with `shardsCalibration` see more than 1 */
  calibrationShards: number;
  diagnostics: Diagnostic[];
}

/** what a stage's own check reads: the rest of the recipe, and where to report */
export interface StageCheckContext {
  calibration: CalibrationConfig | undefined;
  /** where a field of this stage was written */
  locate(path: JsonPath): Location;
  diagnostics: Diagnostic[];
}

export interface StageDef<P extends { kind: string }> {
  /** the YAML `kind`, the schema file's name and this module's name */
  readonly kind: P['kind'];
  /** every property of the stage's schema, compared with schema/stages/<kind>.schema.json by a test */
  readonly properties: ParamKeys<P>;
  needsCalibration(params: P): boolean;
  /** whether the stage leaves quantized weights (a smoothing-only stage needs a quantizing stage after it) */
  quantizes(params: P): boolean;
  /** whether `expand` splits its calibration statistics over `calibrationShards` steps; the planner refuses more than 1 shard otherwise */
  readonly shardsCalibration?: boolean;
  /** why a calibrating stage that does not shard cannot (the planner's refusal of more than 1 shard says it) */
  readonly unshardable?: string;
  /** how plan messages name the stage; default its kind */
  describe?(params: P): string;
  /** rules between this stage and the rest of the recipe that JSON Schema cannot express */
  check?(params: P, ctx: StageCheckContext): void;
  expand(params: P, ctx: StageContext): void;
}

/** a per-layer step's own id, params and inputs (its layer state is added) */
export interface LayerStep<K extends StepKind> {
  params: StepParams<K>;
  inputs?: Record<string, StepId | StepId[] | undefined>;
  id?: string;
}

/**
 * One step per decoder layer reading that layer's state as the previous stage left it; `make` gives params
 * and inputs (it gets the step planned for the layer before, for stages whose steps chain their activations).
 * Afterwards the stage's steps are the layers' states.
 */
export function perLayerSteps<K extends StepKind>(ctx: StageContext, kind: K, make: (layer: number, previous: StepId | undefined) => LayerStep<K>): StepId[] {
  const out: StepId[] = [];
  for (let l = 0; l < ctx.b.config.numLayers; l++) {
    const { params, inputs, id } = make(l, out[l - 1]);
    out.push(
      ctx.b.add({
        id: id ?? `${ctx.prefix}/layer.${l}`,
        kind,
        params,
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

/**
 * Per-layer steps that are the stage's own calibration chain (GPTQ, AutoRound): each layer's step reads the
 * outputs of the step before it (layer 0 the embeddings) as `hidden` (`make` gets it too, for steps it plans
 * beside the layer's), and later stages calibrate on them.
 */
export function chainedLayerSteps<K extends StepKind>(ctx: StageContext, kind: K, make: (layer: number, hidden: StepId) => LayerStep<K>): StepId[] {
  const embed = ctx.b.chain(0);
  const steps = perLayerSteps(ctx, kind, (l, previous) => {
    const hidden = previous ?? embed;
    const step = make(l, hidden);
    return { ...step, inputs: { hidden, ...step.inputs } };
  });
  ctx.b.replaceChain(steps);
  return steps;
}
