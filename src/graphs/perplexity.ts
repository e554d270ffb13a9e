// Perplexity under DESIGN.md §6 (GPTQ's llama_eval protocol): windows of seq_len tokens cut from one encoded
// stream, each run from position 0, NLL averaged over the seq_len−1 predicted tokens of every window.
// Windows are processed layer by layer in chunks (one decoder layer's weights in memory at a time); with a
// reference source the same pass also measures KL(reference ‖ model) of the next-token distributions.

import type { Runtime } from '../ort/session.js';
import { tensor, type Tensor } from '../tensor.js';
import { nllKernel, nllKlKernel } from './head-graph.js';
import { runDecoderLayer } from './layer-runner.js';
import type { WeightSource } from '../model/source.js';
import { embed } from '../model/embed.js';

export interface PerplexityOptions {
  /** windows per onnxruntime call */
  batch?: number;
  /** bytes of hidden states held per chunk of windows */
  chunkBytes?: number;
  /** measure KL(reference ‖ source) and the reference's own perplexity in the same pass */
  reference?: WeightSource;
  onProgress?: (done: number, total: number) => void;
}

export interface PerplexityResult {
  perplexity: number;
  /** mean negative log-likelihood in nats */
  nll: number;
  /** predicted tokens scored */
  tokens: number;
  windows: number;
  seqLen: number;
  /** mean KL(reference ‖ model) per predicted token, when a reference was given */
  kl?: number;
  referencePerplexity?: number;
  seconds: number;
}

async function forwardChunk(rt: Runtime, src: WeightSource, ids: Int32Array, n: number, T: number, batch: number, tick: () => void): Promise<Float32Array> {
  const H = src.config.hiddenSize;
  let hidden = embed(await src.tensor(src.arch.embedding), ids, src.config.features.embedScale);
  for (let l = 0; l < src.config.numLayers; l++) {
    const weights = await src.layer(l);
    const actQuant = src.actQuant(l);
    const next = new Float32Array(n * T * H);
    for (let b = 0; b < n; b += batch) {
      const m = Math.min(batch, n - b);
      const x = tensor('float32', [m, T, H], hidden.subarray(b * T * H, (b + m) * T * H));
      const { out } = await runDecoderLayer(rt, src.config, src.arch.layer(src.config, l), weights, x, { actQuant });
      next.set(out!.data as Float32Array, b * T * H);
      tick();
    }
    hidden = next;
  }
  return hidden;
}

/** perplexity of `src` on `windows` (int32 `[n, T]`) */
export async function perplexity(rt: Runtime, src: WeightSource, windows: Tensor<'int32'>, options: PerplexityOptions = {}): Promise<PerplexityResult> {
  const t0 = performance.now();
  const [n, T] = windows.dims as [number, number];
  const cfg = src.config;
  const batch = Math.max(1, options.batch ?? Math.max(1, Math.floor(2048 / T)));
  const perChunk = Math.max(batch, Math.floor((options.chunkBytes ?? 256 * 2 ** 20) / (T * cfg.hiddenSize * 4)));
  const ref = options.reference;
  const passes = ref ? 2 : 1;
  const totalTicks = Math.ceil(n / batch) * (cfg.numLayers * passes + 1);
  let ticks = 0;
  const tick = (): void => options.onProgress?.(++ticks, totalTicks);
  let nllSum = 0;
  let refSum = 0;
  let klSum = 0;
  const norm = await src.tensor(src.arch.finalNorm);
  const lm = await src.tensor(src.arch.lmHeadWeight(cfg));
  const refNorm = ref ? await ref.tensor(ref.arch.finalNorm) : undefined;
  const refLm = ref ? await ref.tensor(ref.arch.lmHeadWeight(ref.config)) : undefined;
  const head = ref ? await nllKlKernel(rt, cfg) : await nllKernel(rt, cfg);
  for (let c = 0; c < n; c += perChunk) {
    const m = Math.min(perChunk, n - c);
    const ids = windows.data.subarray(c * T, (c + m) * T);
    const hidden = await forwardChunk(rt, src, ids, m, T, batch, tick);
    const refHidden = ref ? await forwardChunk(rt, ref, ids, m, T, batch, tick) : undefined;
    const H = cfg.hiddenSize;
    for (let b = 0; b < m; b += batch) {
      const k = Math.min(batch, m - b);
      const targets = new BigInt64Array(k * (T - 1));
      for (let w = 0; w < k; w++) for (let t = 1; t < T; t++) targets[w * (T - 1) + t - 1] = BigInt(ids[(b + w) * T + t] as number);
      const slice = (h: Float32Array): Tensor<'float32'> => tensor('float32', [k, T, H], h.subarray(b * T * H, (b + k) * T * H));
      const feeds: Record<string, Tensor> = { x: slice(hidden), norm, lm_head: lm, targets: tensor('int64', [k, T - 1, 1], targets) };
      if (ref && refHidden && refNorm && refLm) Object.assign(feeds, { x_ref: slice(refHidden), norm_ref: refNorm, lm_head_ref: refLm });
      const out = await head.run(feeds);
      for (const v of out['nll']!.data as Float32Array) nllSum += v;
      if (ref) {
        for (const v of out['nll_ref']!.data as Float32Array) refSum += v;
        for (const v of out['kl']!.data as Float32Array) klSum += v;
      }
      tick();
    }
  }
  const tokens = n * (T - 1);
  const result: PerplexityResult = {
    perplexity: Math.exp(nllSum / tokens),
    nll: nllSum / tokens,
    tokens,
    windows: n,
    seqLen: T,
    seconds: (performance.now() - t0) / 1000,
  };
  if (ref) {
    result.kl = klSum / tokens;
    result.referencePerplexity = Math.exp(refSum / tokens);
  }
  return result;
}
