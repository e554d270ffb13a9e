// The contract of a step implementation: a pure function of its params, its input steps' artifacts and its
// source files, writing its own artifacts into `outDir`. It runs in the compute worker thread; it reports
// progress and warnings through the context and returns metrics that go into the cache entry's meta.json.

import type { Json } from '../cache/key.js';
import type { Runtime } from '../ort/session.js';

export interface StepInputDir {
  id: string;
  kind: string;
  dir: string;
  /** the metrics the input step returned */
  result: Json;
}

export interface StepContext<P = unknown> {
  id: string;
  params: P;
  /** artifact directories of the input steps, by role */
  inputs: Record<string, StepInputDir | StepInputDir[]>;
  /** source files by role (absolute paths) */
  files: Record<string, string>;
  /** the model directory, when the step reads a model */
  modelDir: string | undefined;
  /** a fresh directory to write artifacts into; it becomes the cache entry */
  outDir: string;
  runtime: Runtime;
  progress(done: number, total: number, message?: string): void;
  warn(message: string): void;
  signal: AbortSignal;
}

/** a step kind's implementation: `K` is its literal kind, `P` its params (steps/registry.ts maps one to the other) */
export interface StepImpl<K extends string = string, P = unknown> {
  readonly kind: K;
  run(ctx: StepContext<P>): Promise<Json>;
}

/**
 * a step kind as the registries declare it (steps/registry.ts, an output format's `output.ts`): cheap to
 * import, so a run whose steps are all cached never loads an implementation (nor graphs, formats or algo)
 */
export interface StepDef<K extends string = string, P = unknown> {
  readonly kind: K;
  /** bump when a code change alters the step's results: it is part of the cache key */
  readonly version: number;
  /** the implementation, imported on first use */
  load(): Promise<StepImpl<K, P>>;
}

/** declares a step kind whose implementation `load` imports (once, however often it is asked for) */
export function stepDef<K extends string, P>(kind: K, version: number, load: () => Promise<StepImpl<K, P>>): StepDef<K, P> {
  let loading: Promise<StepImpl<K, P>> | undefined;
  return {
    kind,
    version,
    load: () =>
      (loading ??= load().then((impl) => {
        if (impl.kind !== kind) throw new Error(`step kind "${kind}" loaded the implementation of "${impl.kind}"`);
        return impl;
      })),
  };
}

export function input(ctx: StepContext<unknown>, role: string): StepInputDir {
  const v = ctx.inputs[role];
  if (v === undefined || Array.isArray(v)) throw new Error(`step ${ctx.id}: expected one input "${role}"`);
  return v;
}

export function optionalInput(ctx: StepContext<unknown>, role: string): StepInputDir | undefined {
  const v = ctx.inputs[role];
  if (Array.isArray(v)) throw new Error(`step ${ctx.id}: expected one input "${role}"`);
  return v;
}

export function inputList(ctx: StepContext<unknown>, role: string): StepInputDir[] {
  const v = ctx.inputs[role];
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

export function requireModel(ctx: StepContext<unknown>): string {
  if (!ctx.modelDir) throw new Error(`step ${ctx.id}: no model directory`);
  return ctx.modelDir;
}
