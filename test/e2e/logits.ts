// Full logits of a few windows through any WeightSource (layer by layer on onnxruntime, the head in JS), for
// equivalence tests of function-preserving transforms.

import { embed } from '../../src/model/embed.js';
import { runDecoderLayer } from '../../src/graphs/layer-runner.js';
import type { WeightSource } from '../../src/model/source.js';
import type { Runtime } from '../../src/ort/session.js';
import { tensor } from '../../src/tensor.js';

export async function logitsOf(rt: Runtime, src: WeightSource, ids: Int32Array, windows: number, T: number): Promise<Float32Array> {
  const cfg = src.config;
  const H = cfg.hiddenSize;
  let x = tensor('float32', [windows, T, H], embed(await src.tensor(src.arch.embedding), ids, cfg.features.embedScale));
  for (let l = 0; l < cfg.numLayers; l++) {
    x = (await runDecoderLayer(rt, cfg, src.arch.layer(cfg, l), await src.layer(l), x, { actQuant: src.actQuant(l) }))['out'] as typeof x;
  }
  const norm = (await src.tensor(src.arch.finalNorm)).data;
  const lm = (await src.tensor(src.arch.lmHeadWeight(cfg))).data;
  const V = cfg.vocabSize;
  const out = new Float32Array(windows * T * V);
  const h = new Float64Array(H);
  for (let p = 0; p < windows * T; p++) {
    let ms = 0;
    for (let i = 0; i < H; i++) ms += (x.data[p * H + i] as number) ** 2;
    const inv = 1 / Math.sqrt(ms / H + cfg.rmsNormEps);
    for (let i = 0; i < H; i++) h[i] = (x.data[p * H + i] as number) * inv * (cfg.features.normOffset + (norm[i] as number));
    for (let v = 0; v < V; v++) {
      let s = 0;
      for (let i = 0; i < H; i++) s += (h[i] as number) * (lm[v * H + i] as number);
      out[p * V + v] = s;
    }
  }
  return out;
}

/** ‖a − b‖ / ‖b‖ */
export function relativeDifference(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += ((a[i] as number) - (b[i] as number)) ** 2;
    den += (b[i] as number) ** 2;
  }
  return Math.sqrt(num / den);
}
