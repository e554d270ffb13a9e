// Cross-stage rules (as llm-compressor's Recipe.validate_model_after): calibration data for stages that need
// it, a quantizing stage after every smoothing-only stage, each stage's own rules (its StageDef's `check`),
// a calibration length the model's sliding window allows, and calibration_shards only with stages that shard.

import { errorAt, type Diagnostic } from '../diag/diagnostic.js';
import type { LoadedRecipe } from '../recipe/types.js';
import { stageDef, stageDefs } from '../stages/registry.js';
import type { PlanBuilder } from './builder.js';

export function checkStages(loaded: LoadedRecipe, b: PlanBuilder, diagnostics: Diagnostic[]): void {
  const { recipe } = loaded;
  recipe.stages.forEach((stage, i) => {
    const def = stageDef(stage);
    const here = loaded.locate(['stages', i]);
    if (def.needsCalibration(stage) && !recipe.calibration) {
      diagnostics.push(errorAt('missing-calibration', `stage "${stage.kind}" needs calibration data, but the recipe has no calibration block`, here));
    }
    if (!def.quantizes(stage) && !recipe.stages.slice(i + 1).some((s) => stageDef(s).quantizes(s))) {
      const what = def.describe?.(stage) ?? stage.kind;
      diagnostics.push(
        errorAt('no-quantizing-stage-after', `${what} only rescales weights; add a quantizing stage after it (rtn, gptq, autoround) or give it a scheme`, here),
      );
    }
    def.check?.(stage, { calibration: recipe.calibration, locate: (path) => loaded.locate(['stages', i, ...path]), diagnostics });
  });
  checkShards(loaded, diagnostics);
  const sw = b.config.slidingWindow;
  const seq = recipe.calibration?.seq_len ?? 0;
  if (sw !== null && seq > sw && loaded.doc.hasIn(['calibration', 'seq_len'])) {
    diagnostics.push(errorAt('seq-len-over-sliding-window', `seq_len ${seq} exceeds the model's sliding_window ${sw}`, loaded.locate(['calibration', 'seq_len'])));
  }
}

/** calibration_shards > 1 needs every calibrating stage to plan shard steps (its StageDef's `shardsCalibration`) */
function checkShards(loaded: LoadedRecipe, diagnostics: Diagnostic[]): void {
  const { recipe } = loaded;
  const shards = recipe.parallel?.calibration_shards ?? 1;
  if (shards <= 1) return;
  const unsharded = recipe.stages.map((s, i) => ({ s, i })).filter(({ s }) => stageDef(s).needsCalibration(s) && !stageDef(s).shardsCalibration);
  if (unsharded.length === 0) return;
  const names = unsharded.map(({ s, i }) => `stage ${i + 1} (${stageDef(s).describe?.(s) ?? s.kind})`).join(', ');
  const reasons = [...new Set(unsharded.flatMap(({ s }) => stageDef(s).unshardable ?? []))];
  const why = reasons.length > 0 ? `: ${reasons.join('; ')}` : '';
  diagnostics.push(
    errorAt(
      'calibration-shards-unsupported',
      `calibration_shards ${shards}: data-parallel calibration is implemented for ${shardingKinds().join(', ')} only, and ${names} calibrates${why}; use calibration_shards: 1`,
      loaded.locate(['parallel', 'calibration_shards']),
      unsharded.map(({ s, i }) => ({ message: `stage "${s.kind}" here`, location: loaded.locate(['stages', i]) })),
    ),
  );
}

/** the stage kinds that declare `shardsCalibration`, as the message lists them */
const shardingKinds = (): string[] => Object.values(stageDefs).filter((d) => d.shardsCalibration).map((d) => d.kind);
