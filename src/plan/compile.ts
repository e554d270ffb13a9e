// compilePlan: a validated recipe → the DAG of steps, read top to bottom like the pipeline it describes.
// Cross-stage rules that JSON Schema cannot express become plan diagnostics pointing at the stage.

import { join } from 'node:path';
import { errorAt, type Diagnostic } from '../diag/diagnostic.js';
import type { Result } from '../diag/result.js';
import type { LoadedRecipe } from '../recipe/types.js';
import { resolveModel, type ResolvedModel } from './model.js';
import { PlanBuilder } from './builder.js';
import { checkStages } from './checks.js';
import { stageDefs } from '../stages/registry.js';
import type { StageContext } from '../stages/stage.js';
import type { Plan, StepId } from './types.js';
import { addEvaluation, addOutputs, addReport } from './outputs.js';

export interface PlanResult {
  plan: Plan;
  warnings: Diagnostic[];
}

export function compilePlan(loaded: LoadedRecipe): Result<PlanResult> {
  const diagnostics: Diagnostic[] = [];
  const model = resolveModel(loaded, diagnostics);
  if (!model) return { ok: false, error: diagnostics };
  const b = new PlanBuilder(model.config, model.arch, model.ref);
  if (model.step) b.add(model.step);
  checkStages(loaded, b, diagnostics);
  if (diagnostics.some((d) => d.severity === 'error')) return { ok: false, error: diagnostics };

  addCalibration(loaded, b, model, diagnostics);
  addStages(loaded, b, diagnostics);
  if (diagnostics.some((d) => d.severity === 'error')) return { ok: false, error: diagnostics };
  addOutputs(loaded, b);
  addEvaluation(loaded, b, model, diagnostics);
  addReport(loaded, b);
  if (diagnostics.some((d) => d.severity === 'error')) return { ok: false, error: diagnostics };
  return { ok: true, value: { plan: { steps: b.steps, outputs: b.outputs, metricSteps: b.metricSteps }, warnings: diagnostics } };
}

/** a dataset as step files/params: a file of its own, or a file inside the model directory */
export function datasetSource(ref: { source: 'file'; path: string } | { source: 'model'; file: string }, model: ResolvedModel): { files: Record<string, string>; params: { model_file?: string } } {
  if (ref.source === 'file') return { files: { dataset: ref.path }, params: {} };
  if (model.ref.kind === 'dir') return { files: { dataset: join(model.ref.dir, ref.file) }, params: {} };
  return { files: {}, params: { model_file: ref.file } };
}

function addCalibration(loaded: LoadedRecipe, b: PlanBuilder, model: ResolvedModel, diagnostics: Diagnostic[]): void {
  const calib = loaded.recipe.calibration;
  const ref = loaded.paths.calibration;
  if (!calib || !ref) return;
  const seqLen = cappedSeqLen(loaded, ['calibration', 'seq_len'], calib.seq_len, model, diagnostics);
  const source = datasetSource(ref, model);
  const origin = loaded.locate(['calibration']);
  const params = { role: 'calibration', seq_len: seqLen, samples: calib.samples, shuffle: calib.shuffle, seed: calib.seed, text_field: calib.text_field, ...source.params };
  b.startChain(() => {
    const ids: StepId = b.add({ id: 'tokenize/calibration', kind: 'tokenize', params, files: source.files, readsModel: true, origin, group: 'calibration', deviceDependent: false });
    return b.add({ id: 'embed/calibration', kind: 'embed', params: {}, inputs: { ids }, readsModel: true, origin, group: 'calibration', deviceDependent: false });
  });
}

/** seq_len written in the recipe must fit the model; a default is capped to the model's context */
export function cappedSeqLen(loaded: LoadedRecipe, path: (string | number)[], value: number, model: ResolvedModel, diagnostics: Diagnostic[]): number {
  const max = model.config.maxPositions;
  if (value <= max) return value;
  if (loaded.doc.hasIn(path)) {
    diagnostics.push(errorAt('seq-len-too-long', `seq_len ${value} exceeds the model's max_position_embeddings ${max}`, loaded.locate(path)));
  }
  return max;
}

function addStages(loaded: LoadedRecipe, b: PlanBuilder, diagnostics: Diagnostic[]): void {
  loaded.recipe.stages.forEach((stage, i) => {
    const ctx: StageContext = {
      b,
      index: i + 1,
      prefix: `stage${i + 1}.${stage.kind}`,
      group: `stage ${i + 1}: ${stage.kind}`,
      origin: loaded.locate(['stages', i]),
      locate: (path) => loaded.locate(['stages', i, ...path]),
      calibration: loaded.recipe.calibration,
      diagnostics,
    };
    const def = stageDefs[stage.kind] as { expand(s: typeof stage, c: StageContext): void };
    def.expand(stage, ctx);
  });
}
