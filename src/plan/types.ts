// The compiled form of a recipe: a DAG of steps in topological order. A step's inputs are other steps (by
// role), its files are source files whose contents go into its cache key, and its origin is the YAML node it
// came from, so a failure at run time still points at a recipe line.

import type { Location } from '../diag/diagnostic.js';
import type { StepId } from '../stages/step-plan.js';

/** where the model of a plan comes from: a directory on disk, or the artifact of a step (the example model) */
export type ModelRef = { kind: 'dir'; dir: string } | { kind: 'step'; step: StepId };

export interface StepNode {
  id: StepId;
  kind: string;
  /** the params its StepImpl declares, as plain data (their canonical JSON goes into the key) */
  params: unknown;
  /** upstream steps by role; a list keeps its order (e.g. the layer states of every layer) */
  inputs: Record<string, StepId | StepId[]>;
  /** source files read by the step, by role (`model`, `dataset`): their digests go into the key */
  files: Record<string, string>;
  /** the model the step reads, when it reads one */
  model?: ModelRef;
  origin?: Location;
  /** display group, e.g. `stage 2: gptq` */
  group: string;
  /** whether the results depend on the execution provider (float reductions reorder on CUDA) */
  deviceDependent: boolean;
}

export interface PlannedOutput {
  format: string;
  /** absolute destination directory */
  path: string;
  step: StepId;
}

/** an evaluated model: `fp`, `quantized`, or a written model its output format runs (`onnx`) */
export interface PlannedEvaluation {
  role: string;
  step: StepId;
  /** how the report names a written model (the report names fp and quantized itself) */
  label?: string;
}

export interface Plan {
  steps: StepNode[];
  outputs: PlannedOutput[];
  /** the perplexity steps, fp and quantized first: the run's metrics */
  evaluations: PlannedEvaluation[];
}
