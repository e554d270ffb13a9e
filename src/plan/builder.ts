// PlanBuilder: the mutable state of plan compilation. It owns the step list and the two per-layer tables that
// stages read and write: the latest layer state of each decoder layer, and the calibration chain (the step
// whose artifact holds each layer's inputs under the model as it currently is). Missing chain links are made
// on demand by `propagate` steps, so stages that do not need a chain never pay for one.

import type { Json } from '../cache/key.js';
import type { Location } from '../diag/diagnostic.js';
import type { ArchAdapter, ModuleInfo } from '../model/arch.js';
import type { ModelConfig } from '../model/config.js';
import { stepId, type ModelRef, type PlannedOutput, type StepId, type StepNode } from './types.js';

export interface StepSpec {
  id: string;
  kind: string;
  params: Json;
  inputs?: Record<string, StepId | StepId[] | undefined>;
  files?: Record<string, string>;
  readsModel?: boolean;
  origin?: Location;
  group: string;
  deviceDependent?: boolean;
}

export class PlanBuilder {
  readonly config: ModelConfig;
  readonly arch: ArchAdapter;
  readonly model: ModelRef;
  readonly modules: readonly ModuleInfo[];
  readonly steps: StepNode[] = [];
  readonly outputs: PlannedOutput[] = [];
  readonly metricSteps: StepId[] = [];
  /** latest layer-state step per decoder layer; undefined = the base model's weights */
  readonly state: (StepId | undefined)[];
  /** calibration inputs of each layer under the current model; undefined = not planned yet */
  #chain: (StepId | undefined)[] = [];
  /** counts model states so propagate steps of different states get different ids */
  #generation = 0;
  readonly #ids = new Set<string>();
  /** the per-layer steps of each stage (1-based), for the report */
  readonly stageLayers = new Map<number, StepId[]>();
  /** full module name → 1-based index of the stage that quantized it (a module is quantized once) */
  readonly quantizedBy = new Map<string, number>();

  constructor(config: ModelConfig, arch: ArchAdapter, model: ModelRef) {
    this.config = config;
    this.arch = arch;
    this.model = model;
    this.modules = arch.modules(config);
    this.state = Array.from({ length: config.numLayers }, () => undefined);
  }

  add(spec: StepSpec): StepId {
    if (this.#ids.has(spec.id)) throw new Error(`plan error: step id ${spec.id} planned twice`);
    this.#ids.add(spec.id);
    const inputs: Record<string, StepId | StepId[]> = {};
    for (const [role, v] of Object.entries(spec.inputs ?? {})) if (v !== undefined) inputs[role] = v;
    const node: StepNode = {
      id: stepId(spec.id),
      kind: spec.kind,
      params: spec.params,
      inputs,
      files: spec.files ?? {},
      group: spec.group,
      deviceDependent: spec.deviceDependent ?? true,
      ...(spec.readsModel ? { model: this.model } : {}),
      ...(spec.origin ? { origin: spec.origin } : {}),
    };
    this.steps.push(node);
    return node.id;
  }

  #chainRoot: (() => StepId) | undefined;

  /**
   * Where the calibration chain starts: `plan` adds the tokenize and embedding steps (layer 0's inputs for
   * every model state) the first time a stage asks for calibration data, so recipes whose stages need none
   * plan no calibration steps.
   */
  startChain(plan: () => StepId): void {
    this.#chainRoot = plan;
  }

  /** the step holding layer `l`'s calibration inputs under the current model, planning propagation as needed */
  chain(l: number): StepId {
    const hit = this.#chain[l];
    if (hit) return hit;
    if (l === 0) {
      if (!this.#chainRoot) throw new Error('plan error: no calibration data planned (the recipe needs a calibration block)');
      this.#chain[0] = this.#chainRoot();
      return this.#chain[0];
    }
    const prev = this.chain(l - 1);
    const id = this.add({
      id: `propagate/g${this.#generation}.layer.${l - 1}`,
      kind: 'propagate',
      params: { layer: l - 1 },
      inputs: { hidden: prev, state: this.state[l - 1] },
      readsModel: true,
      group: 'calibration',
    });
    this.#chain[l] = id;
    return id;
  }

  /** a stage changed the model's function: later stages calibrate on a new chain from the embeddings */
  resetChain(): void {
    this.#chain = this.#chain.slice(0, 1);
    this.#generation++;
  }

  /** a stage provides its own chain: `steps[l]` holds layer l+1's inputs */
  replaceChain(steps: readonly StepId[]): void {
    this.#chain = [this.#chain[0], ...steps];
    this.#generation++;
  }
}
