// What an output format declares, once, in src/outputs/<format>/ (the way a stage kind declares itself in
// src/stages/<kind>.ts): its recipe options (typed here, validated by schema/outputs/<format>.schema.json,
// the two compared by a test), the step that writes its directory and that step's params, the evaluation of
// the written model when quantforge can run it, and how `eval`/`generate` recognise and open such a
// directory. The planner, the executor's metrics and the model opener read these declarations and never
// branch on the format.

import type { OpenedModel } from '../graphs/open.js';
import type { Runtime } from '../ort/session.js';
import type { ModuleQuant } from '../quant/module-quant.js';
import type { ParamKeys } from '../stages/stage.js';
import type { StepDef } from '../steps/types.js';

/** an output entry as every format has it; a format's options type extends it */
export interface OutputOptions {
  readonly format: string;
  /** relative to the recipe, as written */
  readonly path: string;
}

/** the step that writes the output directory from the final layer states (input role `states`) */
export interface OutputWriter<O, W> {
  readonly step: StepDef<string, W>;
  params(output: O): W;
}

/** the perplexity of the written model itself, beside the fp and fake-quantized ones */
export interface OutputEvaluation<E> {
  /** its key in `metrics.perplexity`, its report input role and its step id `evaluate/<role>` */
  readonly role: string;
  /** how the report names the evaluated model */
  readonly label: string;
  /** reads the evaluation windows (role `ids`) and the written directory (role `input`) */
  readonly step: StepDef<string, E>;
  readonly input: string;
  /** params from the recipe's `evaluate.perplexity.batch_size` */
  params(batchSize: number | null): E;
}

/** recognising and opening a directory of this format for `quantforge eval` and `generate` */
export interface OutputOpener {
  /** whether `dir` holds a model of this format (cheap: looks at files, never throws) */
  detect(dir: string): boolean;
  open(rt: Runtime, dir: string): Promise<OpenedModel>;
}

/** a quantized Linear as an output format sees it at plan time */
export interface PlannedModule {
  readonly name: string;
  readonly quant: ModuleQuant;
  /** [out, in] */
  readonly shape: readonly [number, number];
}

/** the model as an output format sees it at plan time */
export interface PlannedModel {
  /** config.json's model_type */
  readonly modelType: string;
}

export interface OutputDef<O extends OutputOptions, W = unknown, E = unknown> {
  /** the recipe's `format`, the schema file's name and this folder's name */
  readonly format: O['format'];
  /** every property of the format's schema, compared with schema/outputs/<format>.schema.json by a test */
  readonly properties: ParamKeys<O>;
  readonly write: OutputWriter<O, W>;
  readonly evaluate?: OutputEvaluation<E>;
  readonly open?: OutputOpener;
  /** why the format cannot write a module quantized so (a plan error at the output); undefined when it can */
  supports?(module: PlannedModule): string | undefined;
  /** what writing a module quantized so costs (a plan warning at the output, once per text); undefined when nothing */
  warns?(module: PlannedModule): string | undefined;
  /** why the format cannot write this model at all (a plan error at the output, before any compute) */
  supportsModel?(model: PlannedModel): string | undefined;
}
