// Perplexity under DESIGN.md §6 (GPTQ's llama_eval protocol): windows of seq_len tokens cut from one encoded
// stream, each run from position 0, NLL averaged over the seq_len−1 predicted tokens of every window.
// Windows are processed layer by layer in chunks (one decoder layer's weights in memory at a time), each layer
// from onnxruntime's fused kernels (fused-layer.ts: equal to the basic-op layer up to float32 rounding). KL(fp ‖ q)
// of the next-token distributions comes without a second forward pass (head-graph.ts): the fp evaluation writes
// Σ p log p and ē = Wᵀp per position of its first windows (`klWrite`), a quantized one reads them (`klRead`).
// Models whose logits are not linear in the hidden state (a final logit softcap: head-graph.ts klFromStatistics)
// measure KL with a `reference` source run in the same pass instead, on every window.

import type { Runtime } from '../ort/session.js';
import { tensor, type Tensor } from '../tensor.js';
import { nllKernel, nllKlFromReferenceKernel, nllKlKernel, nllKlReferenceKernel } from './head-graph.js';
import { runDecoderLayer } from './layer-runner.js';
import type { WeightSource } from '../model/source.js';
import { embed } from '../model/embed.js';

export interface PerplexityOptions {
  /** windows per onnxruntime call */
  batch?: number;
  /** bytes of hidden states held per chunk of windows */
  chunkBytes?: number;
  /** run the basic-op layer graph (decoder-graph.ts) instead of the fused kernels: the reference, slower */
  basicLayers?: boolean;
  /** keep what KL needs, for the first `windows` windows (an fp evaluation) */
  klWrite?: KlReferenceWriter;
  /** measure KL(fp ‖ this model) on the first `windows` windows from what an fp evaluation kept */
  klRead?: KlReferenceReader;
  /** measure KL(reference ‖ source) by running `reference` in the same pass (models without klFromStatistics) */
  reference?: WeightSource;
  onProgress?: (done: number, total: number) => void;
}

/** per position of windows [start, start + count): Σ p log p `[count, T-1]` and ē = Wᵀp `[count, T-1, H]` */
export interface KlReference {
  negent: Tensor<'float32'>;
  ebar: Tensor<'float32'>;
}

export interface KlReferenceWriter {
  readonly windows: number;
  write(start: number, ref: KlReference): Promise<void>;
}

export interface KlReferenceReader {
  readonly windows: number;
  read(start: number, count: number): Promise<KlReference>;
}

export interface PerplexityResult {
  perplexity: number;
  /** mean negative log-likelihood in nats */
  nll: number;
  /** predicted tokens scored */
  tokens: number;
  windows: number;
  seqLen: number;
  /** mean KL(fp ‖ model) per predicted token of the first `klWindows` windows, when klRead or a reference was given */
  kl?: number;
  klWindows?: number;
  seconds: number;
}

async function forwardChunk(rt: Runtime, src: WeightSource, ids: Int32Array, n: number, T: number, batch: number, fused: boolean, tick: () => void): Promise<Float32Array> {
  const H = src.config.hiddenSize;
  let hidden = embed(await src.tensor(src.arch.embedding), ids, src.config.features.embedScale);
  for (let l = 0; l < src.config.numLayers; l++) {
    const weights = await src.layer(l);
    const actQuant = src.actQuant(l);
    const next = new Float32Array(n * T * H);
    for (let b = 0; b < n; b += batch) {
      const m = Math.min(batch, n - b);
      const x = tensor('float32', [m, T, H], hidden.subarray(b * T * H, (b + m) * T * H));
      const { out } = await runDecoderLayer(rt, src.config, src.arch.layer(src.config, l), weights, x, { actQuant, fused });
      next.set(out!.data as Float32Array, b * T * H);
      tick();
    }
    hidden = next;
  }
  return hidden;
}

/** running sums, added to value by value in window order (so the perplexity's rounding never depends on batching) */
interface Sums {
  nll: number;
  kl: number;
}

/** adds the nll (and KL) of windows [w0, w0 + k) of a chunk, their hidden states `x` `[k, T, H]` (and the reference's), to `sums` */
interface Head {
  score(sums: Sums, w0: number, x: Tensor<'float32'>, ids: Int32Array, xRef?: Tensor<'float32'>): Promise<void>;
}

const targetsOf = (ids: Int32Array, k: number, T: number): Tensor<'int64'> => {
  const targets = new BigInt64Array(k * (T - 1));
  for (let w = 0; w < k; w++) for (let t = 1; t < T; t++) targets[w * (T - 1) + t - 1] = BigInt(ids[w * T + t] as number);
  return tensor('int64', [k, T - 1, 1], targets);
};

async function makeHead(rt: Runtime, src: WeightSource, options: PerplexityOptions): Promise<Head> {
  const cfg = src.config;
  const norm = await src.tensor(src.arch.finalNorm);
  const lm = await src.tensor(src.arch.lmHeadWeight(cfg));
  const ref = options.reference;
  if (ref) {
    // KL beside a reference model run in the same pass, on every window
    const refNorm = await ref.tensor(ref.arch.finalNorm);
    const refLm = await ref.tensor(ref.arch.lmHeadWeight(ref.config));
    const kernel = await nllKlKernel(rt, cfg);
    return {
      async score(sums, _w0, x, ids, xRef) {
        if (!xRef) throw new Error('perplexity: no reference hidden states');
        const [k, T] = x.dims as [number, number];
        const out = await kernel.run({ x, norm, lm_head: lm, x_ref: xRef, norm_ref: refNorm, lm_head_ref: refLm, targets: targetsOf(ids, k, T) });
        for (const v of out['nll']!.data as Float32Array) sums.nll += v;
        for (const v of out['kl']!.data as Float32Array) sums.kl += v;
      },
    };
  }
  const plain = await nllKernel(rt, cfg);
  const { klWrite, klRead } = options;
  const withRef = klWrite ? await nllKlReferenceKernel(rt, cfg) : klRead ? await nllKlFromReferenceKernel(rt, cfg) : undefined;
  const refWindows = klWrite?.windows ?? klRead?.windows ?? 0;
  const run = async (sums: Sums, x: Tensor<'float32'>, ids: Int32Array, w0: number, withKl: boolean): Promise<void> => {
    const [k, T] = x.dims as [number, number];
    const feeds: Record<string, Tensor> = { x, norm, lm_head: lm, targets: targetsOf(ids, k, T) };
    if (klRead && withKl) Object.assign(feeds, await klRead.read(w0, k));
    const out = withKl && withRef ? await withRef.run(feeds) : await plain.run(feeds);
    if (klWrite && withKl) await klWrite.write(w0, { negent: out['negent'] as Tensor<'float32'>, ebar: out['ebar'] as Tensor<'float32'> });
    for (const v of out['nll']!.data as Float32Array) sums.nll += v;
    for (const v of (out['kl']?.data ?? []) as Float32Array) sums.kl += v;
  };
  return {
    async score(sums, w0, x, ids) {
      const [k, T, H] = x.dims as [number, number, number];
      const split = Math.max(0, Math.min(k, refWindows - w0));
      const part = (a: number, b: number): Tensor<'float32'> => tensor('float32', [b - a, T, H], x.data.subarray(a * T * H, b * T * H));
      if (split > 0) await run(sums, part(0, split), ids.subarray(0, split * T), w0, true);
      if (split < k) await run(sums, part(split, k), ids.subarray(split * T), w0 + split, false);
    },
  };
}

/** perplexity of `src` on `windows` (int32 `[n, T]`) */
export async function perplexity(rt: Runtime, src: WeightSource, windows: Tensor<'int32'>, options: PerplexityOptions = {}): Promise<PerplexityResult> {
  const t0 = performance.now();
  const [n, T] = windows.dims as [number, number];
  const cfg = src.config;
  const H = cfg.hiddenSize;
  const batch = Math.max(1, options.batch ?? Math.max(1, Math.floor(2048 / T)));
  const perChunk = Math.max(batch, Math.floor((options.chunkBytes ?? 256 * 2 ** 20) / (T * H * 4)));
  const ref = options.reference;
  const totalTicks = Math.ceil(n / batch) * (cfg.numLayers * (ref ? 2 : 1) + 1);
  let ticks = 0;
  const tick = (): void => options.onProgress?.(++ticks, totalTicks);
  const sums: Sums = { nll: 0, kl: 0 };
  const head = await makeHead(rt, src, options);
  for (let c = 0; c < n; c += perChunk) {
    const m = Math.min(perChunk, n - c);
    const ids = windows.data.subarray(c * T, (c + m) * T);
    const hidden = await forwardChunk(rt, src, ids, m, T, batch, !options.basicLayers, tick);
    const refHidden = ref ? await forwardChunk(rt, ref, ids, m, T, batch, !options.basicLayers, tick) : undefined;
    for (let b = 0; b < m; b += batch) {
      const k = Math.min(batch, m - b);
      const slice = (h: Float32Array): Tensor<'float32'> => tensor('float32', [k, T, H], h.subarray(b * T * H, (b + k) * T * H));
      await head.score(sums, c + b, slice(hidden), ids.subarray(b * T, (b + k) * T), refHidden ? slice(refHidden) : undefined);
      tick();
    }
  }
  const tokens = n * (T - 1);
  const result: PerplexityResult = {
    perplexity: Math.exp(sums.nll / tokens),
    nll: sums.nll / tokens,
    tokens,
    windows: n,
    seqLen: T,
    seconds: (performance.now() - t0) / 1000,
  };
  if (ref) {
    result.klWindows = n;
    result.kl = sums.kl / tokens;
  } else if (options.klRead) {
    const klWindows = Math.min(n, options.klRead.windows);
    result.klWindows = klWindows;
    result.kl = klWindows > 0 ? sums.kl / (klWindows * (T - 1)) : 0;
  }
  return result;
}
