// The end of the plan: each recipe output written by its format's step (src/outputs/), the evaluation of the
// full-precision and quantized models (and of every written model its format can run), and the report.

import { basename, dirname, join } from 'node:path';
import { errorAt, warningAt, type Diagnostic, type Location } from '../diag/diagnostic.js';
import type { PlannedModule } from '../outputs/output-def.js';
import { outputDef } from '../outputs/registry.js';
import type { LoadedRecipe } from '../recipe/types.js';
import type { StepId } from '../stages/step-plan.js';
import type { PlanBuilder } from './builder.js';
import { cappedSeqLen, datasetSource } from './datasets.js';
import type { ResolvedModel } from './model.js';
import type { PlannedEvaluation } from './types.js';

/** layer states for every decoder layer (all quantized by now: the checks guarantee a quantizing stage) */
function finalStates(b: PlanBuilder): StepId[] {
  return b.state.map((s, l) => {
    if (!s) throw new Error(`plan error: layer ${l} has no state after the stages`);
    return s;
  });
}

/** the quantized Linears with their args and shapes, as the stages assigned them */
function plannedModules(b: PlanBuilder): PlannedModule[] {
  const out: PlannedModule[] = [];
  for (const [name, quant] of b.moduleQuant) {
    const layer = b.modules.find((m) => m.name === name)?.layer;
    const specs = layer === undefined || layer === null ? [] : b.arch.layer(b.config, layer).linears;
    const spec = layer === undefined || layer === null ? undefined : specs.find((s) => name === `${b.arch.layerPrefix(layer)}${s.local}`);
    if (spec) out.push({ name, quant, shape: [spec.outFeatures, spec.inFeatures] });
  }
  return out;
}

/**
 * a plan error at each output whose format cannot write the model, or a module as it was quantized (one per
 * reason), and a warning for each cost writing a module so has (one per text)
 */
function checkOutputs(loaded: LoadedRecipe, b: PlanBuilder, diagnostics: Diagnostic[]): void {
  const modules = plannedModules(b);
  (loaded.recipe.outputs ?? []).forEach((o, i) => {
    const def = outputDef(o);
    const at = loaded.locate(['outputs', i]);
    const model = def.supportsModel?.({ modelType: b.config.modelType });
    if (model !== undefined) {
      diagnostics.push(errorAt('unsupported-output-model', `${o.format} output cannot write this model: ${model}`, at));
      return;
    }
    const seen = new Set<string>();
    for (const m of modules) {
      const why = def.supports?.(m);
      if (why !== undefined && !seen.has(why)) {
        seen.add(why);
        const stage = b.quantizedBy.get(m.name);
        const related = stage === undefined ? [] : [{ message: `${m.name} is quantized by stage ${stage}`, location: loaded.locate(['stages', stage - 1]) }];
        diagnostics.push(errorAt('unsupported-output-scheme', `${o.format} output cannot write ${m.name}: ${why}`, at, related));
      }
      const cost = why === undefined ? def.warns?.(m) : undefined;
      if (cost !== undefined && !seen.has(cost)) {
        seen.add(cost);
        diagnostics.push(warningAt('output-requantizes', `${o.format} output: ${cost}`, at));
      }
    }
  });
}

export function addOutputs(loaded: LoadedRecipe, b: PlanBuilder, diagnostics: Diagnostic[]): void {
  checkOutputs(loaded, b, diagnostics);
  const states = finalStates(b);
  const outputs = loaded.recipe.outputs ?? [];
  outputs.forEach((o, i) => {
    const { write } = outputDef(o);
    const repeat = outputs.slice(0, i).filter((p) => p.format === o.format).length;
    const id = b.addStep(write.step, write.params(o), {
      id: `${write.step.kind}/${o.format}${repeat > 0 ? `.${repeat}` : ''}`,
      inputs: { states },
      readsModel: true,
      origin: loaded.locate(['outputs', i]),
      group: 'outputs',
      deviceDependent: false,
    });
    b.outputs.push({ format: o.format, path: loaded.paths.outputs[i]!, step: id });
  });
}

/** perplexity of every written model whose format can run it (the first output of each format) */
function evaluateOutputs(b: PlanBuilder, ids: StepId, origin: Location, batchSize: number | null): PlannedEvaluation[] {
  const out: PlannedEvaluation[] = [];
  for (const format of new Set(b.outputs.map((o) => o.format))) {
    const written = b.outputs.find((o) => o.format === format)!;
    const evaluation = outputDef(written).evaluate;
    if (!evaluation) continue;
    const step = b.addStep(evaluation.step, evaluation.params(batchSize), {
      id: `evaluate/${evaluation.role}`,
      inputs: { ids, [evaluation.input]: written.step },
      origin,
      group: 'evaluate',
    });
    out.push({ role: evaluation.role, label: evaluation.label, step });
  }
  return out;
}

export function addEvaluation(loaded: LoadedRecipe, b: PlanBuilder, model: ResolvedModel, diagnostics: Diagnostic[]): void {
  const ppl = loaded.recipe.evaluate?.perplexity;
  const ref = loaded.paths.perplexity;
  if (!ppl || !ref) return;
  const seqLen = cappedSeqLen(loaded, ['evaluate', 'perplexity', 'seq_len'], ppl.seq_len, model, diagnostics);
  const source = datasetSource(ref, model, 'evaluation');
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
  const written = evaluateOutputs(b, ids, origin, ppl.batch_size);
  const common = { batch_size: ppl.batch_size };
  // with kl, the fp evaluation keeps what KL needs and the quantized one reads it (no second fp forward)
  const kl = loaded.recipe.evaluate?.kl ?? true;
  const fp = b.add({ id: 'evaluate/fp', kind: 'evaluate', params: { mode: 'fp', kl, ...common }, inputs: { ids }, readsModel: true, origin, group: 'evaluate' });
  const quantized = b.add({
    id: 'evaluate/quantized',
    kind: 'evaluate',
    params: { mode: 'quantized', kl, ...common },
    inputs: { ids, states: finalStates(b), ...(kl ? { fp } : {}) },
    readsModel: true,
    origin,
    group: 'evaluate',
  });
  b.evaluations.push({ role: 'fp', step: fp }, { role: 'quantized', step: quantized }, ...written);
}

function stageSummary(stage: Readonly<Record<string, unknown>>): string {
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
  for (const e of b.evaluations) inputs[e.role] = e.step;
  const written = b.evaluations.flatMap((e) => (e.label === undefined ? [] : [{ role: e.role, label: e.label }]));
  const id = b.add({
    id: 'report',
    kind: 'report',
    params: {
      title: basename(loaded.path),
      model: typeof loaded.recipe.model === 'string' ? loaded.recipe.model : `example ${loaded.recipe.model.example} (seed ${loaded.recipe.model.seed})`,
      stages: loaded.recipe.stages.map((s) => ({ kind: s.kind, summary: stageSummary(s) })),
      ...(written.length > 0 ? { evaluations: written } : {}),
    },
    inputs,
    origin: loaded.locate(['stages']),
    group: 'outputs',
    deviceDependent: false,
  });
  b.outputs.push({ format: 'report', path: reportPath(loaded), step: id });
}
