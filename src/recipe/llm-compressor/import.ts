// `quantforge import llm-compressor`: read an llm-compressor recipe, convert it, check the result against the
// schema (diagnostics at the llm-compressor lines), and render it as a quantforge recipe.

import { readFileSync } from 'node:fs';
import { basename, dirname, relative, resolve } from 'node:path';
import { errorAt, type Diagnostic, type SourceFile } from '../../diag/diagnostic.js';
import type { Result } from '../../diag/result.js';
import { loadRecipeSource } from '../load.js';
import { parseYaml, toData } from '../yaml-source.js';
import type { ImportInputs } from './adopt.js';
import { convertLlmCompressor } from './convert.js';
import { isLlmCompressorRecipe } from './detect.js';
import { renderRecipe } from './render.js';

export interface Imported {
  /** the quantforge recipe as YAML text */
  readonly text: string;
  /** `GPTQModifier → gptq` per stage */
  readonly stages: string[];
  /** fields left as placeholders (model, calibration.dataset) */
  readonly placeholders: string[];
  readonly warnings: Diagnostic[];
}

/** `out`: where the recipe will be written (paths are made relative to it); undefined: the working directory */
export function importLlmCompressor(path: string, inputs: ImportInputs, out?: string): Result<Imported> {
  const absolute = resolve(path);
  let contents: string;
  try {
    contents = readFileSync(absolute, 'utf8');
  } catch (e) {
    const reason = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : String((e as Error).message);
    return { ok: false, error: [errorAt('recipe-unreadable', `Cannot read recipe ${absolute}: ${reason}.`, { file: { path: absolute, contents: '' }, range: { offset: 0, length: 0 } })] };
  }
  const file: SourceFile = { path: absolute, contents };
  const parsed = parseYaml(file);
  if (!parsed.ok) return parsed;
  const asData = toData(parsed.value.doc, file);
  if (!asData.ok) return asData;
  const data = asData.value;
  if (!isLlmCompressorRecipe(data)) {
    const what = typeof data === 'object' && data !== null && 'quantforge' in data ? 'it is already a quantforge recipe' : 'expected <name>_stage maps of <group>_modifiers (quant_stage: {quant_modifiers: {GPTQModifier: {...}}}), a <group>_modifiers map, or modifiers such as GPTQModifier at the top';
    return { ok: false, error: [errorAt('not-llm-compressor', `${basename(absolute)} is not an llm-compressor recipe: ${what}.`, { file, range: { offset: 0, length: 0 } })] };
  }
  // the schema checks the stages; model and dataset stand in for the placeholders here
  const checked = loadRecipeSource(file, [], { model: inputs.model ?? '.', dataset: inputs.dataset ?? '.', outputDir: inputs.outputDir });
  if (!checked.ok) return checked;
  const converted = convertLlmCompressor(parsed.value.doc, file);
  const baseDir = out === undefined ? process.cwd() : dirname(resolve(out));
  const text = renderRecipe(converted, file, {
    model: inputs.model === undefined ? undefined : resolve(inputs.model),
    dataset: inputs.dataset === undefined ? undefined : resolve(inputs.dataset),
    outputDir: inputs.outputDir === undefined ? undefined : resolve(inputs.outputDir),
    baseDir,
    source: relative(baseDir, absolute).split('\\').join('/') || basename(absolute),
  });
  const placeholders = [...(inputs.model === undefined ? ['model'] : []), ...(inputs.dataset === undefined ? ['calibration.dataset'] : [])];
  const stages = converted.stages.map((s) => `${s.from.map((e) => e.name).join(' + ')} → ${s.kind}`);
  return { ok: true, value: { text, stages, placeholders, warnings: [...checked.value.warnings] } };
}
