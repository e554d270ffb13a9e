// Cross-stage rules (as llm-compressor's Recipe.validate_model_after): calibration data for stages that need
// it, a quantizing stage after every smoothing-only stage, and parameters that must agree with the
// calibration block.

import { errorAt, type Diagnostic } from '../diag/diagnostic.js';
import type { LoadedRecipe } from '../recipe/types.js';
import { stageDef } from '../stages/registry.js';
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
      const what = stage.kind === 'awq' ? 'awq without scheme or config_groups' : stage.kind;
      diagnostics.push(
        errorAt('no-quantizing-stage-after', `${what} only rescales weights; add a quantizing stage after it (rtn, gptq, autoround) or give it a scheme`, here),
      );
    }
    if (stage.kind === 'autoround' && recipe.calibration) {
      if (stage.seqlen !== null && stage.seqlen !== recipe.calibration.seq_len) {
        diagnostics.push(
          errorAt('autoround-seqlen', `autoround seqlen ${stage.seqlen} differs from calibration.seq_len ${recipe.calibration.seq_len}; set calibration.seq_len instead`, loaded.locate(['stages', i, 'seqlen'])),
        );
      }
      if (stage.nsamples !== null && stage.nsamples > recipe.calibration.samples) {
        diagnostics.push(
          errorAt('autoround-nsamples', `autoround nsamples ${stage.nsamples} exceeds calibration.samples ${recipe.calibration.samples}`, loaded.locate(['stages', i, 'nsamples'])),
        );
      }
    }
  });
  const sw = b.config.slidingWindow;
  const seq = recipe.calibration?.seq_len ?? 0;
  if (sw !== null && seq > sw && loaded.doc.hasIn(['calibration', 'seq_len'])) {
    diagnostics.push(errorAt('seq-len-over-sliding-window', `seq_len ${seq} exceeds the model's sliding_window ${sw}`, loaded.locate(['calibration', 'seq_len'])));
  }
}
