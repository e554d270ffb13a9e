// loadRecipe: read YAML (keeping source ranges), apply --set overrides to the document, validate with
// the JSON Schema (defaults filled), check every sweep value, and report every mistake at once with
// its location.

import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Document } from 'yaml';
import { errorAt, type Diagnostic, type SourceFile } from '../diag/diagnostic.js';
import type { Result } from '../diag/result.js';
import { formatPath } from './json-path.js';
import { adoptLlmCompressor, type ImportInputs } from './llm-compressor/adopt.js';
import { locatePath, type LocateContext } from './locate.js';
import { applyAssignment, parseOverride } from './overrides.js';
import { resolvePaths } from './paths.js';
import { parseSweepBlock } from './sweep.js';
import type { Assignment, LoadedRecipe, Recipe, SweepAxis } from './types.js';
import { validateRecipeData } from './validate.js';
import { parseYaml, toData } from './yaml-source.js';

/**
 * `overrides` are `--set` arguments (`stages[1].iters=50`); one with several values becomes a sweep axis.
 * An llm-compressor recipe is converted in memory when `inputs` give its model and calibration dataset.
 */
export function loadRecipe(path: string, overrides: readonly string[] = [], inputs: ImportInputs = {}): Result<LoadedRecipe> {
  const absolute = resolve(path);
  let contents: string;
  try {
    contents = readFileSync(absolute, 'utf8');
  } catch (e) {
    const file = { path: absolute, contents: '' };
    const reason = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : String((e as Error).message);
    return { ok: false, error: [errorAt('recipe-unreadable', `Cannot read recipe ${absolute}: ${reason}.`, { file, range: { offset: 0, length: 0 } })] };
  }
  return loadRecipeSource({ path: absolute, contents }, overrides, inputs);
}

/** loadRecipe for text already in memory; `file.path` must be absolute (relative paths resolve against its directory) */
export function loadRecipeSource(file: SourceFile, overrides: readonly string[] = [], inputs: ImportInputs = {}): Result<LoadedRecipe> {
  const parsed = parseYaml(file);
  if (!parsed.ok) return parsed;
  const adopted = adoptLlmCompressor(parsed.value.doc, file, inputs);
  if (!adopted.ok) return { ok: false, error: sortDiagnostics([...adopted.error, ...parsed.value.warnings], [file]) };
  const doc = adopted.value?.doc ?? parsed.value.doc;
  const warnings = [...parsed.value.warnings, ...(adopted.value?.warnings ?? [])];
  const errors: Diagnostic[] = [];
  const pinned: Assignment[] = [...(adopted.value?.assignments ?? [])];
  const swept: SweepAxis[] = [];
  const files: SourceFile[] = [file];
  for (const text of overrides) {
    const override = parseOverride(text);
    files.push(override.ok ? override.value.file : (override.error[0]?.location.file ?? file));
    if (!override.ok) errors.push(...override.error);
    else if (override.value.assignments.length === 1) pinned.push(...override.value.assignments);
    else {
      const { path, key, values, assignments, location } = override.value;
      swept.push({ path, key, values, assignments, location });
    }
  }
  const base = evaluate(doc, file, pinned);
  errors.push(...base.errors);
  if (errors.length > 0) return { ok: false, error: sortDiagnostics([...errors, ...warnings], files) };

  const block = parseSweepBlock(doc, file);
  const sweep = mergeAxes(block.axes, swept, pinned);
  errors.push(...block.errors);
  for (const axis of sweep) errors.push(...checkAxis(doc, file, pinned, axis));
  if (errors.length > 0) return { ok: false, error: sortDiagnostics([...errors, ...warnings], files) };
  return { ok: true, value: { ...makeLoaded(file, doc, base.data, pinned, sweep, warnings), ...(adopted.value ? { importNote: adopted.value.note } : {}) } };
}

/** a sweep variant (or any set of assignments) applied to a loaded recipe, validated again */
export function applyAssignments(loaded: LoadedRecipe, assignments: readonly Assignment[]): Result<LoadedRecipe> {
  const doc = loaded.doc.clone();
  const all = [...loaded.assignments, ...assignments];
  const result = evaluate(doc, loaded.file, assignments, all);
  if (result.errors.length > 0) return { ok: false, error: sortDiagnostics(result.errors, [loaded.file]) };
  return { ok: true, value: { ...makeLoaded(loaded.file, doc, result.data, all, [], loaded.warnings), ...(loaded.importNote ? { importNote: loaded.importNote } : {}) } };
}

/** applies `assignments` to `doc` and validates; `known` are all assignments in effect, for locating messages */
function evaluate(doc: Document, file: SourceFile, assignments: readonly Assignment[], known = assignments) {
  const errors: Diagnostic[] = [];
  for (const assignment of assignments) {
    const failure = applyAssignment(doc, assignment);
    if (failure) errors.push(failure);
  }
  const converted = toData(doc, file);
  if (!converted.ok) return { data: null as unknown, errors: [...errors, ...converted.error] };
  const data = converted.value;
  const ctx: LocateContext = { doc, file, assignments: known };
  for (const issue of validateRecipeData(data)) {
    const related = (issue.related ?? []).map((r) => ({ message: r.message, location: locatePath(ctx, r.path, r.target) }));
    errors.push(errorAt(issue.code, issue.message, locatePath(ctx, issue.path, issue.target), related));
  }
  return { data, errors };
}

/** every value of an axis must make a valid recipe on its own (the base recipe is already valid) */
function checkAxis(doc: Document, file: SourceFile, pinned: readonly Assignment[], axis: SweepAxis): Diagnostic[] {
  const errors: Diagnostic[] = [];
  for (const assignment of axis.assignments) {
    const variant = evaluate(doc.clone(), file, [assignment], [...pinned, assignment]);
    const { segments, value } = assignment.site;
    const text = value.file.contents.slice(value.range.offset, value.range.offset + value.range.length);
    const start = Math.min(segments[0]?.range.offset ?? value.range.offset, value.range.offset);
    const end = value.range.offset + Math.max(value.range.length, 1);
    for (const error of variant.errors) {
      const { file: at, range } = error.location;
      const inSite = at === value.file && range.offset >= start && range.offset < end;
      const note = { message: `when ${axis.key} = ${text} (sweep)`, location: value };
      errors.push(inSite ? error : { ...error, related: [...(error.related ?? []), note] });
    }
  }
  return errors;
}

/** the recipe's axes, replaced by multi-valued --set on the same path and removed by single-valued ones */
function mergeAxes(fromRecipe: SweepAxis[], fromOverrides: SweepAxis[], pinned: readonly Assignment[]): SweepAxis[] {
  const axes = new Map<string, SweepAxis>();
  for (const axis of [...fromRecipe, ...fromOverrides]) axes.set(formatPath(axis.path), axis);
  for (const assignment of pinned) axes.delete(formatPath(assignment.path));
  return [...axes.values()];
}

function makeLoaded(
  file: SourceFile,
  doc: Document,
  data: unknown,
  assignments: readonly Assignment[],
  sweep: readonly SweepAxis[],
  warnings: readonly Diagnostic[],
): LoadedRecipe {
  const recipe = data as Recipe;
  const dir = dirname(file.path);
  const ctx: LocateContext = { doc, file, assignments };
  return {
    recipe,
    file,
    path: file.path,
    dir,
    doc,
    paths: resolvePaths(recipe, dir),
    sweep,
    warnings,
    assignments,
    locate: (path, target = 'value') => locatePath(ctx, path, target),
  };
}

/** recipe file first, then each --set argument, each in text order */
function sortDiagnostics(diagnostics: Diagnostic[], files: readonly SourceFile[]): Diagnostic[] {
  const rank = (d: Diagnostic) => {
    const i = files.indexOf(d.location.file);
    return i === -1 ? files.length : i;
  };
  const seen = new Set<string>();
  return diagnostics
    .map((d, i) => ({ d, i }))
    .sort((a, b) => rank(a.d) - rank(b.d) || a.d.location.range.offset - b.d.location.range.offset || a.i - b.i)
    .map(({ d }) => d)
    .filter((d) => {
      const key = `${d.code}|${rank(d)}|${d.location.range.offset}|${d.message}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
}
