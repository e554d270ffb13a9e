// The shape of a recipe after validation, defaults filled (schema/recipe.schema.json is the truth; these
// types mirror it). Fields marked optional (`?`) have no default: absent means "decided at plan time".

import type { Document } from 'yaml';
import type { Diagnostic, Location, SourceFile } from '../diag/diagnostic.js';

export const STAGE_KINDS = ['gptq', 'awq', 'smoothquant', 'autoround', 'rtn'] as const;
export type StageKind = (typeof STAGE_KINDS)[number];

export const SCHEME_NAMES = ['W4A16', 'W4A16_ASYM', 'W8A16', 'W8A8'] as const;
export type SchemeName = (typeof SCHEME_NAMES)[number];

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

export type ActOrder = 'static' | 'group' | null;

export interface QuantArgs {
  num_bits: 4 | 8;
  type: 'int';
  symmetric: boolean;
  strategy: 'tensor' | 'channel' | 'group' | 'token';
  /** an integer when strategy is group */
  group_size?: number | null;
  dynamic: boolean;
  actorder: ActOrder;
  observer: 'minmax' | 'mse';
  observer_kwargs: Record<string, unknown>;
}

export interface ConfigGroup {
  targets: string[];
  weights?: QuantArgs;
  input_activations?: QuantArgs | null;
}

export interface SmoothMapping {
  smooth_layer: string;
  balance_layers: string[];
}

/** parameters shared by stages that quantize; a validated gptq/autoround/rtn stage has exactly one of scheme, config_groups */
export interface QuantizingParams {
  scheme?: SchemeName;
  config_groups?: Record<string, ConfigGroup>;
  targets: string[];
  ignore: string[];
}

export interface GptqStage extends QuantizingParams {
  kind: 'gptq';
  block_size: number;
  dampening_frac: number;
  actorder: ActOrder;
  offload_hessians: boolean;
}

export interface AwqStage extends QuantizingParams {
  kind: 'awq';
  duo_scaling: boolean | 'both';
  n_grid: number;
  /** absent: the architecture's default mappings */
  mappings?: SmoothMapping[];
}

export interface SmoothQuantStage {
  kind: 'smoothquant';
  smoothing_strength: number;
  /** absent: the architecture's default mappings */
  mappings?: SmoothMapping[];
  ignore: string[];
}

export interface AutoRoundStage extends QuantizingParams {
  kind: 'autoround';
  iters: number;
  /** null: 1 / iters */
  lr: number | null;
  /** null: lr */
  minmax_lr: number | null;
  batch_size: number;
  /** null: calibration.samples */
  nsamples: number | null;
  /** null: calibration.seq_len */
  seqlen: number | null;
  enable_minmax_tuning: boolean;
  not_use_best_mse: boolean;
  seed: number;
}

export interface RtnStage extends QuantizingParams {
  kind: 'rtn';
  /** absent: the scheme's own weight observer */
  observer?: 'minmax' | 'mse';
}

export type StageConfig = GptqStage | AwqStage | SmoothQuantStage | AutoRoundStage | RtnStage;
export type StageOf<K extends StageKind> = Extract<StageConfig, { kind: K }>;

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

export type OutputFormat = 'compressed-tensors' | 'onnx';

export interface OutputConfig {
  format: OutputFormat;
  /** relative to the recipe, as written */
  path: string;
  /** onnx only: MatMulNBits accuracy_level of int4 weights */
  accuracy_level: 0 | 1 | 2 | 3 | 4;
}

export interface Recipe {
  quantforge: 1;
  model: ModelSpec;
  device: Device;
  /** absent when no stage needs calibration data (the planner checks) */
  calibration?: CalibrationConfig;
  stages: StageConfig[];
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
}
