// compilePlan: a validated recipe → the DAG of steps, read top to bottom like the pipeline it describes.
// Cross-stage rules that JSON Schema cannot express become plan diagnostics pointing at the stage.

import type { Diagnostic } from '../diag/diagnostic.js';
import type { Result } from '../diag/result.js';
import type { LoadedRecipe } from '../recipe/types.js';
import { stageDef } from '../stages/registry.js';
import type { StageContext } from '../stages/stage.js';
import { PlanBuilder } from './builder.js';
import { checkStages } from './checks.js';
import { cappedSeqLen, datasetSource } from './datasets.js';
import { resolveModel, type ResolvedModel } from './model.js';
import { addEvaluation, addOutputs, addReport } from './outputs.js';
import type { Plan } from './types.js';

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
  addOutputs(loaded, b, diagnostics);
  addEvaluation(loaded, b, model, diagnostics);
  addReport(loaded, b);
  if (diagnostics.some((d) => d.severity === 'error')) return { ok: false, error: diagnostics };
  return { ok: true, value: { plan: { steps: b.steps, outputs: b.outputs, evaluations: b.evaluations }, warnings: diagnostics } };
}

function addCalibration(loaded: LoadedRecipe, b: PlanBuilder, model: ResolvedModel, diagnostics: Diagnostic[]): void {
  const calib = loaded.recipe.calibration;
  const ref = loaded.paths.calibration;
  if (!calib || !ref) return;
  const seqLen = cappedSeqLen(loaded, ['calibration', 'seq_len'], calib.seq_len, model, diagnostics);
  const source = datasetSource(ref, model, 'calibration');
  const origin = loaded.locate(['calibration']);
  b.startChain(() => {
    const ids = b.add({
      id: 'tokenize/calibration',
      kind: 'tokenize',
      params: { role: 'calibration', seq_len: seqLen, samples: calib.samples, shuffle: calib.shuffle, seed: calib.seed, text_field: calib.text_field, ...source.params },
      files: source.files,
      readsModel: true,
      origin,
      group: 'calibration',
      deviceDependent: false,
    });
    return b.add({ id: 'embed/calibration', kind: 'embed', params: {}, inputs: { ids }, readsModel: true, origin, group: 'calibration', deviceDependent: false });
  });
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
      calibrationShards: loaded.recipe.parallel?.calibration_shards ?? 1,
      diagnostics,
    };
    stageDef(stage).expand(stage, ctx);
  });
}
