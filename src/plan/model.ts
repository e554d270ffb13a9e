// The model a plan is compiled against: a directory's config.json, or the example model's config (known
// before its build step runs, since the generator is deterministic).

import { errorAt, type Diagnostic } from '../diag/diagnostic.js';
import { archFor, type ArchAdapter } from '../model/arch.js';
import { readModelConfig, type ModelConfig } from '../model/config.js';
import { exampleModelConfig } from '../model/example-model.js';
import { checkModelDir } from '../model/model-check.js';
import { EXAMPLE_VOCAB_SIZE } from '../model/example-tokenizer.js';
import type { LoadedRecipe } from '../recipe/types.js';
import { stepId, type StepSpec } from '../stages/step-plan.js';
import type { ModelRef } from './types.js';

export interface ResolvedModel {
  config: ModelConfig;
  arch: ArchAdapter;
  ref: ModelRef;
  /** the step that generates the model, for the example model */
  step?: StepSpec<'example-model'>;
}

export function resolveModel(loaded: LoadedRecipe, diagnostics: Diagnostic[]): ResolvedModel | undefined {
  const spec = loaded.recipe.model;
  if (typeof spec !== 'string') {
    const config = exampleModelConfig(spec.example, EXAMPLE_VOCAB_SIZE);
    const id = 'model/example';
    return {
      config,
      arch: archFor(config),
      ref: { kind: 'step', step: stepId(id) },
      step: { id, kind: 'example-model', params: { size: spec.example, seed: spec.seed, dtype: spec.dtype }, origin: loaded.locate(['model']), group: 'model', deviceDependent: false },
    };
  }
  const dir = loaded.paths.model!;
  try {
    const config = readModelConfig(dir);
    const arch = archFor(config);
    // headers only: a truncated or inconsistent checkpoint fails here, before any step runs
    checkModelDir(dir, config, arch);
    return { config, arch, ref: { kind: 'dir', dir } };
  } catch (e) {
    diagnostics.push(errorAt('model-invalid', e instanceof Error ? e.message : String(e), loaded.locate(['model'])));
    return undefined;
  }
}
