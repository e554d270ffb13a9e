// The end of the plan: output artifacts (compressed-tensors, ONNX) built from the final layer states, the
// evaluation of the full-precision and quantized models, and the report.

import type { Diagnostic } from '../diag/diagnostic.js';
import type { LoadedRecipe } from '../recipe/types.js';
import type { PlanBuilder } from './builder.js';
import { cappedSeqLen, datasetSource } from './compile.js';
import type { ResolvedModel } from './model.js';
import type { StepId } from './types.js';
import { basename, dirname, join } from 'node:path';

const OUTPUT_KIND = { 'compressed-tensors': 'pack', onnx: 'export-onnx' } as const;

/** layer states for every decoder layer (all quantized by now: the checks guarantee a quantizing stage) */
function finalStates(b: PlanBuilder): StepId[] {
  return b.state.map((s, l) => {
    if (!s) throw new Error(`plan error: layer ${l} has no state after the stages`);
    return s;
  });
}

export function addOutputs(loaded: LoadedRecipe, b: PlanBuilder): void {
  const states = finalStates(b);
  const outputs = loaded.recipe.outputs ?? [];
  outputs.forEach((o, i) => {
    const kind = OUTPUT_KIND[o.format];
    const repeat = outputs.slice(0, i).filter((p) => p.format === o.format).length;
    const id = b.add({
      id: `${kind}/${o.format}${repeat > 0 ? `.${repeat}` : ''}`,
      kind,
      params: o.format === 'onnx' ? { format: o.format, accuracy_level: o.accuracy_level } : { format: o.format },
      inputs: { states },
      readsModel: true,
      origin: loaded.locate(['outputs', i]),
      group: 'outputs',
      deviceDependent: false,
    });
    b.outputs.push({ format: o.format, path: loaded.paths.outputs[i]!, step: id });
  });
}

export function addEvaluation(loaded: LoadedRecipe, b: PlanBuilder, model: ResolvedModel, diagnostics: Diagnostic[]): void {
  const ppl = loaded.recipe.evaluate?.perplexity;
  const ref = loaded.paths.perplexity;
  if (!ppl || !ref) return;
  const seqLen = cappedSeqLen(loaded, ['evaluate', 'perplexity', 'seq_len'], ppl.seq_len, model, diagnostics);
  const source = datasetSource(ref, model);
  const origin = loaded.locate(['evaluate', 'perplexity']);
  const ids = b.add({
    id: 'tokenize/evaluation',
    kind: 'tokenize',
    params: { role: 'evaluation', seq_len: seqLen, max_windows: ppl.max_windows, text_field: ppl.text_field, ...source.params },
    files: source.files,
    readsModel: true,
    origin,
    group: 'evaluate',
    deviceDependent: false,
  });
  const common = { batch_size: ppl.batch_size };
  const onnx = b.outputs.find((o) => o.format === 'onnx');
  if (onnx) {
    b.metricSteps.push(b.add({ id: 'evaluate/onnx', kind: 'evaluate-onnx', params: common, inputs: { ids, onnx: onnx.step }, origin, group: 'evaluate' }));
  }
  b.metricSteps.push(
    b.add({ id: 'evaluate/fp', kind: 'evaluate', params: { mode: 'fp', kl: false, ...common }, inputs: { ids }, readsModel: true, origin, group: 'evaluate' }),
    b.add({
      id: 'evaluate/quantized',
      kind: 'evaluate',
      params: { mode: 'quantized', kl: loaded.recipe.evaluate?.kl ?? true, ...common },
      inputs: { ids, states: finalStates(b) },
      readsModel: true,
      origin,
      group: 'evaluate',
    }),
  );
}

function stageSummary(stage: Record<string, unknown>): string {
  return Object.entries(stage)
    .filter(([k, v]) => k !== 'kind' && (typeof v !== 'object' || v === null))
    .map(([k, v]) => `${k} ${String(v)}`)
    .join(', ');
}

/** where the report goes: the recipe's `report`, else beside the first output, else beside the recipe */
function reportPath(loaded: LoadedRecipe): string {
  if (loaded.paths.report) return loaded.paths.report;
  const name = basename(loaded.path).replace(/\.ya?ml$/, '');
  const first = loaded.paths.outputs[0];
  return first ? join(dirname(first), `${name}-report`) : join(loaded.dir, `${name}.report`);
}

export function addReport(loaded: LoadedRecipe, b: PlanBuilder): void {
  const inputs: Record<string, StepId | StepId[] | undefined> = {};
  for (const [stage, ids] of b.stageLayers) inputs[`stage${stage}`] = ids;
  for (const role of ['fp', 'quantized', 'onnx']) inputs[role] = b.steps.find((s) => s.id === `evaluate/${role}`)?.id;
  const id = b.add({
    id: 'report',
    kind: 'report',
    params: {
      title: basename(loaded.path),
      model: typeof loaded.recipe.model === 'string' ? loaded.recipe.model : `example ${loaded.recipe.model.example} (seed ${loaded.recipe.model.seed})`,
      stages: loaded.recipe.stages.map((s) => ({ kind: s.kind, summary: stageSummary(s as unknown as Record<string, unknown>) })),
    },
    inputs,
    origin: loaded.locate(['stages']),
    group: 'outputs',
    deviceDependent: false,
  });
  b.outputs.push({ format: 'report', path: reportPath(loaded), step: id });
}
