// Token embedding lookup: a row copy per token, cheap enough to stay in JavaScript.

import type { Tensor } from '../tensor.js';

/** rows of `weight` `[vocab, H]` for each id (times `scale`: Gemma 3's √hidden), flattened to `[ids.length, H]` */
export function embed(weight: Tensor<'float32'>, ids: ArrayLike<number>, scale = 1): Float32Array {
  const [vocab, H] = weight.dims as [number, number];
  const out = new Float32Array(ids.length * H);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i] as number;
    if (id < 0 || id >= vocab) throw new Error(`token id ${id} is outside the embedding table (vocab ${vocab})`);
    out.set(weight.data.subarray(id * H, (id + 1) * H), i * H);
  }
  if (scale !== 1) for (let i = 0; i < out.length; i++) out[i] = (out[i] as number) * scale;
  return out;
}
