// The shape of a recipe after validation, defaults filled (schema/recipe.schema.json is the truth; these
// types mirror it). Fields marked optional (`?`) have no default: absent means "decided at plan time".
// Stages and outputs are typed by their own definitions (src/stages/, src/outputs/), not here.

import type { Document } from 'yaml';
import type { Diagnostic, Location, SourceFile } from '../diag/diagnostic.js';

export type ExampleSize = 'tiny' | '100m' | '1b';

export interface ExampleModel {
  example: ExampleSize;
  seed: number;
  dtype: 'f32' | 'bf16';
}

/** a model directory path as written (relative to the recipe), or the synthetic example model */
export type ModelSpec = string | ExampleModel;

/** the recipe's `device:`; the same union as src/ort/device.ts DEVICES (a test checks) */
export type Device = 'auto' | 'cpu' | 'webgpu' | 'cuda';

export interface CalibrationConfig {
  /** a path relative to the recipe, or `model:<file>` for a file inside the model directory */
  dataset: string;
  samples: number;
  /** capped by the model's context length at plan time */
  seq_len: number;
  shuffle: boolean;
  seed: number;
  /** JSONL only */
  text_field: string;
}

/**
 * A stage as the recipe layer knows it: its kind and the params schema/stages/<kind>.schema.json validated
 * (defaults filled). src/stages/<kind>.ts types the params; a test keeps the type and the schema in step.
 */
export interface StageConfig {
  readonly kind: string;
  readonly [param: string]: unknown;
}

/** the recipe's `parallel:` block */
export interface ParallelConfig {
  /** calibration statistics of a layer split over this many steps (1: the plan as without the key) */
  calibration_shards: number;
}

export interface PerplexityConfig {
  dataset: string;
  seq_len: number;
  /** null: every window */
  max_windows: number | null;
  /** null: about 2048 tokens per onnxruntime call */
  batch_size: number | null;
  text_field: string;
}

export interface EvaluateConfig {
  perplexity?: PerplexityConfig;
  kl: boolean;
}

/** an output entry: its format, its path and the options schema/outputs/<format>.schema.json validated */
export interface OutputConfig {
  readonly format: string;
  /** relative to the recipe, as written */
  readonly path: string;
  readonly [option: string]: unknown;
}

export interface Recipe {
  quantforge: 1;
  model: ModelSpec;
  device: Device;
  /** absent when no stage needs calibration data (the planner checks) */
  calibration?: CalibrationConfig;
  stages: StageConfig[];
  /** absent: one calibration shard */
  parallel?: ParallelConfig;
  evaluate?: EvaluateConfig;
  outputs?: OutputConfig[];
  /** directory for report.md / report.html, relative to the recipe */
  report?: string;
  /** raw sweep block; LoadedRecipe.sweep has it parsed */
  sweep?: Record<string, unknown[]>;
}

/** a path into the recipe's data: `stages[1].iters` is ['stages', 1, 'iters'] */
export type JsonPath = readonly (string | number)[];

/** which part of a YAML entry to point at: its key, its value, or (for problems inside a map) the map's key or first line */
export type LocationTarget = 'key' | 'value' | 'container';

/** where an override came from: a `--set` argument or an entry of the recipe's sweep block */
export interface OverrideSite {
  /** location of each path segment (`stages`, `[1]`, `iters`) */
  readonly segments: readonly Location[];
  /** location of the value text */
  readonly value: Location;
}

export interface Assignment {
  readonly path: JsonPath;
  readonly value: unknown;
  readonly site: OverrideSite;
}

export interface SweepAxis {
  readonly path: JsonPath;
  /** the path as written (`stages[0].smoothing_strength`) */
  readonly key: string;
  readonly values: readonly unknown[];
  /** `assignments[i]` sets `values[i]`, carrying where that value was written */
  readonly assignments: readonly Assignment[];
  /** the sweep key in the recipe, or the `--set` argument's path */
  readonly location: Location;
}

export type DatasetRef = { source: 'file'; path: string } | { source: 'model'; file: string };

/** recipe paths resolved against the recipe's directory (the raw strings stay in `recipe`) */
export interface ResolvedPaths {
  /** absolute model directory; undefined for the example model (a build step makes it) */
  model: string | undefined;
  calibration: DatasetRef | undefined;
  perplexity: DatasetRef | undefined;
  /** parallel to recipe.outputs */
  outputs: string[];
  report: string | undefined;
}

export interface LoadedRecipe {
  readonly recipe: Recipe;
  readonly file: SourceFile;
  /** absolute path of the recipe file */
  readonly path: string;
  /** absolute directory of the recipe file: the base of every relative path in it */
  readonly dir: string;
  /** the YAML document, overrides applied; nodes from the file keep their source ranges */
  readonly doc: Document;
  readonly paths: ResolvedPaths;
  /** sweep axes from the recipe's sweep block and multi-valued --set overrides */
  readonly sweep: readonly SweepAxis[];
  /** YAML warnings; errors make loading fail instead */
  readonly warnings: readonly Diagnostic[];
  /** single-valued overrides applied to this recipe (--set, or a sweep variant's values) */
  readonly assignments: readonly Assignment[];
  /** where the value (default) or key at `path` was written, in an override's text when one set it; else the nearest written ancestor */
  locate(path: JsonPath, target?: LocationTarget): Location;
  /** set when the file is an llm-compressor recipe converted in memory: the one-line note commands print */
  readonly importNote?: string;
}
