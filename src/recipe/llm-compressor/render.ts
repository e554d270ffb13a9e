// The imported recipe as YAML text: a header saying where it came from, a comment over each stage naming
// the modifier(s) it came from and what was dropped on the way, and the model and calibration dataset as
// paths relative to the written recipe, or as placeholders that `quantforge validate` reports.

import { basename, extname, isAbsolute, relative } from 'node:path';
import { Document, isPair, isScalar, isSeq, visit } from 'yaml';
import type { SourceFile } from '../../diag/diagnostic.js';
import type { Converted } from './convert.js';
import type { StageDraft } from './draft.js';
import { lineOf } from './nodes.js';

const MODEL_PLACEHOLDER = '<REPLACE: path to the Hugging Face model directory>';
const DATASET_PLACEHOLDER = '<REPLACE: path to a calibration text or JSONL file>';

export interface RenderInputs {
  /** absolute paths; undefined writes a placeholder (model, dataset) or a default (outputDir) */
  readonly model?: string | undefined;
  readonly dataset?: string | undefined;
  readonly outputDir?: string | undefined;
  /** the directory the recipe is written to: paths are written relative to it */
  readonly baseDir: string;
  /** the llm-compressor file as the header names it */
  readonly source: string;
}

export function renderRecipe(converted: Converted, file: SourceFile, inputs: RenderInputs): string {
  const stagesDoc = new Document();
  stagesDoc.contents = converted.contents as never;
  const stages = (stagesDoc.toJS() as { stages: unknown[] }).stages;
  const rel = (p: string) => {
    const r = relative(inputs.baseDir, p).split('\\').join('/');
    // a path that climbs to the filesystem root says more written whole
    const ups = r.split('/').filter((s) => s === '..').length;
    if (isAbsolute(r) || (ups > 0 && ups >= inputs.baseDir.split(/[\\/]/).filter(Boolean).length)) return p;
    return r === '' ? '.' : r.startsWith('.') ? r : `./${r}`;
  };
  const stem = basename(inputs.source, extname(inputs.source));
  const doc = new Document({
    quantforge: 1,
    model: inputs.model ? rel(inputs.model) : MODEL_PLACEHOLDER,
    calibration: { dataset: inputs.dataset ? rel(inputs.dataset) : DATASET_PLACEHOLDER },
    stages,
    outputs: [{ format: 'compressed-tensors', path: inputs.outputDir ? rel(inputs.outputDir) : `./out/${stem}` }],
  });
  doc.commentBefore = header(inputs, !inputs.model || !inputs.dataset);
  if (!inputs.model) placeholderComment(doc, ['model'], '--model DIR');
  if (!inputs.dataset) placeholderComment(doc, ['calibration', 'dataset'], '--dataset FILE');
  const seq = doc.get('stages', true);
  if (isSeq(seq)) converted.stages.forEach((stage, i) => {
    const node = seq.items[i];
    if (node && typeof node === 'object') (node as { commentBefore?: string }).commentBefore = stageComment(stage, file);
  });
  compact(doc);
  return doc.toString({ lineWidth: 0, flowCollectionPadding: false });
}

function header(inputs: RenderInputs, placeholders: boolean): string {
  const lines = [
    ` quantforge recipe imported from the llm-compressor recipe ${inputs.source} by \`quantforge import llm-compressor\`.`,
    ' Paths are relative to this file. Calibration uses quantforge\'s defaults (calibration.samples 128, seq_len 2048',
    ' capped by the model\'s context); llm-compressor\'s num_calibration_samples / max_seq_length are these two.',
  ];
  if (placeholders) lines.push(' Replace the <REPLACE: ...> placeholders before running: `quantforge validate` lists them.');
  return lines.join('\n');
}

function placeholderComment(doc: Document, path: string[], flag: string): void {
  const node = doc.getIn(path, true);
  if (isScalar(node)) node.comment = ` placeholder: write the path, or import again with ${flag}`;
}

function stageComment(stage: StageDraft, file: SourceFile): string {
  const from = stage.from.map((e) => `${e.path} (line ${lineOf(file, e.key)})`).join(' + ');
  return [` from ${from}`, ...stage.notes.map((n) => ` ${n}`), ...stage.dropped.map((d) => ` dropped ${d}`)].join('\n');
}

/** lists of names, quantization arguments and outputs on one line each */
function compact(doc: Document): void {
  visit(doc, {
    Seq(_, node) {
      if (node.items.every((item) => isScalar(item))) node.flow = true;
    },
    Map(_, node, path) {
      const parent = path[path.length - 1];
      const key = isPair(parent) && isScalar(parent.key) ? parent.key.value : undefined;
      if (key === 'weights' || key === 'input_activations' || node.items.some((p) => isScalar(p.key) && p.key.value === 'format')) node.flow = true;
    },
  });
}
