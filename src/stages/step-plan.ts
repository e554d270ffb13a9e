// What a stage sees of the plan being compiled (plan/builder.ts implements it): the model's modules, the
// latest layer state of each decoder layer, the calibration chain, and `add`, typed by the step registry so
// a stage that gives a step kind the wrong params does not compile.

import type { Location } from '../diag/diagnostic.js';
import type { ArchAdapter, ModuleInfo } from '../model/arch.js';
import type { ModelConfig } from '../model/config.js';
import type { StepKind, StepParams } from '../steps/registry.js';
import type { ModuleQuant } from '../quant/module-quant.js';

/** a planned step's id, a readable path: `tokenize/calibration`, `stage1.gptq/layer.3`, `pack/compressed-tensors` */
export type StepId = string & { readonly __brand: 'StepId' };

export const stepId = (s: string): StepId => s as StepId;

/** everything about a planned step but its kind and params */
export interface StepPlacement {
  id: string;
  /** upstream steps by role; undefined roles are left out (a layer's state before any stage wrote one) */
  inputs?: Record<string, StepId | StepId[] | undefined>;
  /** source files read by the step, by role: their digests go into its key */
  files?: Record<string, string>;
  /** the step reads the recipe's model */
  readsModel?: boolean;
  /** the YAML node the step came from */
  origin?: Location;
  /** display group, e.g. `stage 2: gptq` */
  group: string;
  /** whether results depend on the execution provider; default true */
  deviceDependent?: boolean;
}

export interface StepSpec<K extends StepKind> extends StepPlacement {
  kind: K;
  params: StepParams<K>;
}

export interface StepPlan {
  readonly config: ModelConfig;
  readonly arch: ArchAdapter;
  readonly modules: readonly ModuleInfo[];
  /** latest layer-state step per decoder layer; undefined = the base model's weights */
  readonly state: (StepId | undefined)[];
  /** the per-layer steps of each stage (1-based), for the report */
  readonly stageLayers: Map<number, StepId[]>;
  /** full module name → 1-based index of the stage that quantized it (a module is quantized once) */
  readonly quantizedBy: Map<string, number>;
  /** full module name → the quantization args it was assigned, for the outputs' checks */
  readonly moduleQuant: Map<string, ModuleQuant>;
  add<K extends StepKind>(spec: StepSpec<K>): StepId;
  /** the step holding layer `l`'s calibration inputs under the current model, planning propagation as needed */
  chain(l: number): StepId;
  /** a stage changed the model's function: later stages calibrate on a new chain from the embeddings */
  resetChain(): void;
  /** a stage provides its own chain: `steps[l]` holds layer l+1's inputs */
  replaceChain(steps: readonly StepId[]): void;
}
