// PlanBuilder: the mutable state of plan compilation. It owns the step list and the two per-layer tables that
// stages read and write: the latest layer state of each decoder layer, and the calibration chain (the step
// whose artifact holds each layer's inputs under the model as it currently is). Missing chain links are made
// on demand by `propagate` steps, so stages that do not need a chain never pay for one. Stages see it as a
// StepPlan (src/stages/step-plan.ts).

import type { ArchAdapter, ModuleInfo } from '../model/arch.js';
import type { ModelConfig } from '../model/config.js';
import type { ModuleQuant } from '../quant/module-quant.js';
import { stepId, type StepId, type StepPlacement, type StepPlan, type StepSpec } from '../stages/step-plan.js';
import type { StepKind } from '../steps/registry.js';
import type { StepDef } from '../steps/types.js';
import type { ModelRef, PlannedEvaluation, PlannedOutput, StepNode } from './types.js';

export class PlanBuilder implements StepPlan {
  readonly config: ModelConfig;
  readonly arch: ArchAdapter;
  readonly model: ModelRef;
  readonly modules: readonly ModuleInfo[];
  readonly steps: StepNode[] = [];
  readonly outputs: PlannedOutput[] = [];
  readonly evaluations: PlannedEvaluation[] = [];
  readonly state: (StepId | undefined)[];
  #chain: (StepId | undefined)[] = [];
  /** counts model states so propagate steps of different states get different ids */
  #generation = 0;
  readonly #ids = new Set<string>();
  readonly stageLayers = new Map<number, StepId[]>();
  readonly quantizedBy = new Map<string, number>();
  readonly moduleQuant = new Map<string, ModuleQuant>();

  constructor(config: ModelConfig, arch: ArchAdapter, model: ModelRef) {
    this.config = config;
    this.arch = arch;
    this.model = model;
    this.modules = arch.modules(config);
    this.state = Array.from({ length: config.numLayers }, () => undefined);
  }

  add<K extends StepKind>(spec: StepSpec<K>): StepId {
    return this.#push(spec.kind, spec.params, spec);
  }

  /** a step of a kind outside the step registry (an output format's), typed by its implementation */
  addStep<P>(impl: StepDef<string, P>, params: P, placement: StepPlacement): StepId {
    return this.#push(impl.kind, params, placement);
  }

  #push(kind: string, params: unknown, spec: StepPlacement): StepId {
    if (this.#ids.has(spec.id)) throw new Error(`plan error: step id ${spec.id} planned twice`);
    this.#ids.add(spec.id);
    const inputs: Record<string, StepId | StepId[]> = {};
    for (const [role, v] of Object.entries(spec.inputs ?? {})) if (v !== undefined) inputs[role] = v;
    const node: StepNode = {
      id: stepId(spec.id),
      kind,
      params,
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

  chainOpen(l: number): boolean {
    return l > 0 && l < this.config.numLayers && this.#chain[l] === undefined;
  }

  provideChain(l: number, id: StepId): void {
    if (!this.chainOpen(l)) throw new Error(`plan error: layer ${l}'s calibration inputs are already planned`);
    this.#chain[l] = id;
  }

  resetChain(): void {
    this.#chain = this.#chain.slice(0, 1);
    this.#generation++;
  }

  replaceChain(steps: readonly StepId[]): void {
    this.#chain = [this.#chain[0], ...steps];
    this.#generation++;
  }
}
