// Step `propagate`: run decoder layer `layer` (as the previous stage left it) over its calibration inputs to
// get the next layer's inputs. Stages that leave the model's function unchanged (SmoothQuant's and AWQ's
// scaling) calibrate on this chain, so every variant of a sweep over their parameters shares it.

import { propagate, readHidden, writeHidden } from './activations.js';
import { actQuantOf, openLayerInput } from './layer-state.js';
import { input, type StepImpl } from './types.js';

export interface PropagateParams {
  layer: number;
}

export const propagateStep: StepImpl<'propagate', PropagateParams> = {
  kind: 'propagate',
  async run(ctx) {
    const { src, state } = await openLayerInput(ctx, ctx.params.layer);
    try {
      const hidden = await readHidden(input(ctx, 'hidden').dir);
      const layer = src.arch.layer(src.config, ctx.params.layer);
      await writeHidden(ctx.outDir, await propagate(ctx.runtime, src.config, layer, state.tensors, hidden, actQuantOf(state.quant), ctx.progress));
      return { layer: ctx.params.layer };
    } finally {
      await src.close();
    }
  },
};
