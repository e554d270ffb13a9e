// An llm-compressor recipe handed to validate, plan or run: converted in memory into a quantforge recipe
// whose nodes keep their llm-compressor source ranges, so every diagnostic points at the llm-compressor
// file. --model, --dataset and --output-dir become assignments (as --set does) whose source is the argument's
// text, so a message about them points at the command line.

import { basename, resolve } from 'node:path';
import { Document, isMap, type Node } from 'yaml';
import { errorAt, type Diagnostic, type SourceFile } from '../../diag/diagnostic.js';
import type { Result } from '../../diag/result.js';
import type { Assignment, JsonPath } from '../types.js';
import { toData } from '../yaml-source.js';
import { convertLlmCompressor, type Converted } from './convert.js';
import { isLlmCompressorRecipe } from './detect.js';
import { locate } from './nodes.js';

/** what an llm-compressor recipe does not say, as typed on the command line (relative to the working directory) */
export interface ImportInputs {
  readonly model?: string | undefined;
  readonly dataset?: string | undefined;
  /** a compressed-tensors output directory (llm-compressor's oneshot output_dir) */
  readonly outputDir?: string | undefined;
}

export interface Adopted {
  readonly doc: Document;
  readonly warnings: Diagnostic[];
  /** model, calibration dataset and output from the inputs */
  readonly assignments: Assignment[];
  /** the one-line note commands print: what the file is and what it became */
  readonly note: string;
  readonly converted: Converted;
}

const FLAGS = { model: '--model', dataset: '--dataset', outputDir: '--output-dir' } as const;

/** undefined: `doc` is not an llm-compressor recipe (and no import inputs were given) */
export function adoptLlmCompressor(doc: Document, file: SourceFile, inputs: ImportInputs = {}): Result<Adopted | undefined> {
  const given = (Object.keys(FLAGS) as (keyof typeof FLAGS)[]).filter((k) => inputs[k] !== undefined);
  // an alias yaml cannot resolve is reported where the recipe is turned into data (load.ts), not here
  const data = toData(doc, file);
  if (!data.ok) return given.length === 0 ? { ok: true, value: undefined } : data;
  if (!isLlmCompressorRecipe(data.value)) {
    if (given.length === 0) return { ok: true, value: undefined };
    const field = { model: 'model', dataset: 'calibration.dataset', outputDir: 'outputs' } as const;
    return {
      ok: false,
      error: given.map((k) =>
        errorAt(
          'import-input-unused',
          `${FLAGS[k]} applies to llm-compressor recipes, and ${basename(file.path)} is a quantforge recipe: set ${field[k]} in it, or with --set ${field[k]}=...`,
          argument(k, inputs[k]!, [], null).site.value,
        ),
      ),
    };
  }
  const converted = convertLlmCompressor(doc, file);
  const errors = [...converted.errors];
  const missing = (['model', 'dataset'] as const).filter((k) => inputs[k] === undefined);
  if (missing.length > 0) {
    const first = isMap(doc.contents) ? (doc.contents.items[0]?.key as Node | undefined) : undefined;
    errors.unshift(
      errorAt(
        'import-input-missing',
        `${basename(file.path)} is an llm-compressor recipe: give ${missing.map((k) => `${FLAGS[k]} ${k === 'model' ? 'DIR' : 'FILE'}`).join(' and ')} to build it as it is, or convert it once with \`quantforge import llm-compressor ${basename(file.path)} -o recipe.yaml\`.`,
        locate(file, first),
      ),
    );
  }
  if (errors.length > 0) return { ok: false, error: [...errors, ...converted.warnings] };
  const assignments = [argument('model', inputs.model!, ['model'], resolve(inputs.model!)), argument('dataset', inputs.dataset!, ['calibration', 'dataset'], resolve(inputs.dataset!))];
  if (inputs.outputDir !== undefined) assignments.push(argument('outputDir', inputs.outputDir, ['outputs'], [{ format: 'compressed-tensors', path: resolve(inputs.outputDir) }]));
  const adopted = new Document();
  adopted.contents = converted.contents as never;
  return { ok: true, value: { doc: adopted, warnings: converted.warnings, assignments, note: noteFor(file, converted, inputs), converted } };
}

function argument(input: keyof typeof FLAGS, text: string, path: JsonPath, value: unknown): Assignment {
  const file: SourceFile = { path: FLAGS[input], contents: text };
  return { path, value, site: { segments: [], value: { file, range: { offset: 0, length: text.length } } } };
}

function noteFor(file: SourceFile, converted: Converted, inputs: ImportInputs): string {
  const stages = converted.stages.map((s) => `${s.from.map((e) => e.name).join(' + ')} → ${s.kind}`).join(', ');
  const output = inputs.outputDir === undefined ? '; without --output-dir DIR the result stays in the step cache' : '';
  return `${basename(file.path)} is an llm-compressor recipe, converted in memory: ${stages}${output} (\`quantforge import llm-compressor\` writes it as a quantforge recipe)`;
}
