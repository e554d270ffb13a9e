// From a recipe file to executable jobs: load and validate (with --set overrides), expand sweep axes into
// variants, compile each variant's plan, and resolve every step's key. Steps that several variants share
// (same key) become one job.

import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { DigestStatCache, digestFile } from '../cache/file-digest.js';
import type { Digest } from '../cache/key.js';
import type { Diagnostic } from '../diag/diagnostic.js';
import type { Provider } from '../ort/device.js';
import { compilePlan } from '../plan/compile.js';
import type { Plan } from '../plan/types.js';
import type { StepId } from '../stages/step-plan.js';
import { applyAssignments, loadRecipe } from '../recipe/load.js';
import type { ImportInputs } from '../recipe/llm-compressor/adopt.js';
import type { Assignment, LoadedRecipe } from '../recipe/types.js';
import { stepVersions } from './step-impls.js';
import { resolveJobs, type Job } from './jobs.js';
import { VERSION } from '../version.js';
import { ReasonedError } from '../diag/failure.js';
import { readJsonFile } from '../diag/file-errors.js';

export interface Variant {
  /** '' for a plain run; `smoothing_strength=0.5` for a sweep variant */
  label: string;
  assignments: { key: string; value: unknown }[];
  loaded: LoadedRecipe;
  plan: Plan;
  keys: Map<StepId, Digest>;
}

export interface Prepared {
  recipe: LoadedRecipe;
  variants: Variant[];
  jobs: Job[];
  warnings: Diagnostic[];
}

const MODEL_FILES = /^(config\.json|generation_config\.json|tokenizer\.json|tokenizer_config\.json|special_tokens_map\.json|.*\.safetensors|model\.safetensors\.index\.json)$/;

/** the files behind a source role: a model directory contributes its config, weights and tokenizer files */
export function sourceFiles(role: string, path: string): string[] {
  if (role !== 'model') return [path];
  if (!existsSync(path)) throw new ReasonedError('model-not-found', `${path}: model directory not found`);
  return readdirSync(path).filter((f) => MODEL_FILES.test(f)).sort().map((f) => join(path, f));
}

export function toolVersions(): Record<string, string> {
  const require = createRequire(import.meta.url);
  const version = (p: string): string => (readJsonFile(p) as { version: string }).version;
  return {
    quantforge: VERSION,
    'onnxruntime-node': version(require.resolve('onnxruntime-node/package.json')),
  };
}

function cartesian(axes: LoadedRecipe['sweep']): Assignment[][] {
  let combos: Assignment[][] = [[]];
  for (const axis of axes) combos = combos.flatMap((c) => axis.assignments.map((a) => [...c, a]));
  return combos;
}

function label(recipe: LoadedRecipe, combo: readonly Assignment[]): { label: string; assignments: Variant['assignments'] } {
  const assignments = combo.map((a) => {
    const axis = recipe.sweep.find((x) => x.assignments.includes(a));
    return { key: axis?.key ?? a.path.join('.'), value: a.value };
  });
  return { label: assignments.map((a) => `${String(a.key).split('.').pop()}=${String(a.value)}`).join(','), assignments };
}

function memo<T>(map: Map<string, Promise<T>>, key: string, make: () => Promise<T>): Promise<T> {
  let hit = map.get(key);
  if (!hit) map.set(key, (hit = make()));
  return hit;
}

export type PrepareResult = { ok: true; value: Prepared } | { ok: false; diagnostics: Diagnostic[] };

/** `inputs`: --model / --dataset / --output-dir for an llm-compressor recipe (converted in memory) */
export async function prepare(recipePath: string, sets: readonly string[], cacheRoot: string, device: Provider, inputs: ImportInputs = {}): Promise<PrepareResult> {
  const loaded = loadRecipe(recipePath, sets, inputs);
  if (!loaded.ok) return { ok: false, diagnostics: loaded.error };
  const recipe = loaded.value;
  const warnings: Diagnostic[] = [...recipe.warnings];
  const variants: Omit<Variant, 'keys'>[] = [];
  const combos = recipe.sweep.length > 0 ? cartesian(recipe.sweep) : [[]];
  for (const combo of combos) {
    const applied = combo.length > 0 ? applyAssignments(recipe, combo) : { ok: true as const, value: recipe };
    if (!applied.ok) return { ok: false, diagnostics: applied.error };
    const compiled = compilePlan(applied.value);
    if (!compiled.ok) return { ok: false, diagnostics: compiled.error };
    if (variants.length === 0) warnings.push(...compiled.value.warnings);
    variants.push({ ...label(recipe, combo), loaded: applied.value, plan: compiled.value.plan });
  }
  const statCache = new DigestStatCache(cacheRoot);
  // every step reading the model lists and digests the same files: once per process
  const digests = new Map<string, Promise<Digest>>();
  const listings = new Map<string, Promise<string[]>>();
  const { jobs, keysByVariant } = await resolveJobs(
    variants.map((v) => v.plan),
    { digestFile: (p) => memo(digests, p, () => digestFile(p, statCache)), versions: stepVersions, tools: toolVersions(), device },
    (role, path) => memo(listings, `${role}:${path}`, async () => sourceFiles(role, path)),
  );
  return { ok: true, value: { recipe, variants: variants.map((v, i) => ({ ...v, keys: keysByVariant[i]! })), jobs, warnings } };
}
