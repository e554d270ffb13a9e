// Step `embed`: the calibration windows' embeddings, the inputs of decoder layer 0 for every stage.

import { embed } from '../model/embed.js';
import { HfSource } from '../model/source.js';
import { tensor } from '../tensor.js';
import { readIds, writeHidden } from './activations.js';
import { input, requireModel, type StepImpl } from './types.js';

export const embedStep: StepImpl<'embed', Record<string, never>> = {
  kind: 'embed',
  async run(ctx) {
    const ids = await readIds(input(ctx, 'ids').dir);
    const src = await HfSource.open(requireModel(ctx));
    try {
      const [N, T] = ids.dims as [number, number];
      const H = src.config.hiddenSize;
      await writeHidden(ctx.outDir, tensor('float32', [N, T, H], embed(await src.tensor(src.arch.embedding), ids.data)));
      return { windows: N, seq_len: T };
    } finally {
      await src.close();
    }
  },
};
