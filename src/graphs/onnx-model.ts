// A quantforge ONNX export (onnx/model.onnx) run as a whole: perplexity under the same protocol as the
// layer-by-layer path, and greedy generation with its KV cache inputs/outputs. An export whose layers use
// GroupQueryAttention decodes with one KV buffer per layer, fed as past and written in place as present (GQA's
// shared-buffer mode): no cache is copied out of or back into onnxruntime per token. onnxruntime's CPU
// GroupQueryAttention does work in proportion to the buffer's length, not only to the positions filled
// (BENCHMARKS.md, Decoding), so the buffers start a little longer than the prompt and grow by a quarter when
// full (kvBufferLength), up to the final length; growing copies the filled positions into the new buffers.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Graph } from '../ort/graph.js';
import type { Kernel, Runtime } from '../ort/session.js';
import { causeText } from '../diag/quote.js';
import { OnnxModelError } from './onnx-model-error.js';
import { tensor, type Tensor } from '../tensor.js';
import { parseModelConfig, readConfigJson, type ModelConfig } from '../model/config.js';
import type { PerplexityOptions, PerplexityResult } from './perplexity.js';
import { logSoftmax, nll } from './head-graph.js';

/** positions per call when a GroupQueryAttention export is evaluated on the WebGPU provider (OnnxModel.perplexity) */
export const GQA_WEBGPU_CHUNK = 16;

function nllFromLogits(rt: Runtime, vocab: number): Promise<Kernel> {
  return rt.kernel(`nll-from-logits:${vocab}`, () => {
    const g = new Graph('nll_from_logits');
    const logits = g.input('logits', 'float32', ['B', 'T', vocab]);
    const targets = g.input('targets', 'int64', ['B', 'T1', 1]);
    const lp = logSoftmax(g, g.op('Slice', [logits, g.ints([0]), g.ints([-1]), g.ints([1])]), rt.device);
    g.output(nll(g, lp, targets), 'nll');
    return g;
  });
}

/** whether the graph file names GroupQueryAttention (weights live in model.onnx_data, so the file is small) */
function usesGroupQueryAttention(file: string): boolean {
  return readFileSync(file).includes('GroupQueryAttention');
}

/** the most float32 values one layer's shared key (or value) buffer may hold (8 GiB) */
const KV_BUFFER_VALUES = 2 ** 31;

/** a shared KV buffer's length is a multiple of this many positions (or the final length) */
const KV_BUFFER_STEP = 32;

/** positions of a shared KV buffer that must hold `needed`: a quarter more, rounded up to KV_BUFFER_STEP, at most `final` */
export function kvBufferLength(needed: number, final: number): number {
  return Math.min(final, Math.ceil((needed * 1.25) / KV_BUFFER_STEP) * KV_BUFFER_STEP);
}

export class OnnxModel {
  readonly #rt: Runtime;
  readonly #session: Kernel;
  readonly #file: string;
  readonly #sharedCache: boolean;
  readonly config: ModelConfig;

  private constructor(rt: Runtime, session: Kernel, config: ModelConfig, file: string, sharedCache: boolean) {
    this.#rt = rt;
    this.#session = session;
    this.config = config;
    this.#file = file;
    this.#sharedCache = sharedCache;
  }

  static async open(rt: Runtime, dir: string, config: ModelConfig): Promise<OnnxModel> {
    const file = join(dir, 'onnx', 'model.onnx');
    const session = await rt.load(file).catch((e: unknown) => {
      throw new OnnxModelError('onnx-load-failed', `${file}: onnxruntime cannot load it (${causeText(e, 300)})`, { file });
    });
    // the KV-cache inputs must be the ones config.json implies, or every forward would fail (or read garbage)
    const have = session.inputNames.filter((n) => n.startsWith('past_key_values.'));
    const layerOf = /^past_key_values\.(\d+)\.(key|value)$/;
    const missing = have.length !== 2 * config.numLayers ? 'count' : have.find((n) => Number(layerOf.exec(n)?.[1] ?? -1) >= config.numLayers || !layerOf.test(n));
    if (missing !== undefined || !session.outputNames.includes('logits')) {
      await session.release();
      const what = missing === undefined ? 'has no "logits" output' : `has KV-cache inputs ${have.length / 2} layers deep`;
      throw new OnnxModelError('onnx-config-mismatch', `${file}: ${what}; config.json num_hidden_layers is ${config.numLayers}`, { file, field: 'num_hidden_layers' });
    }
    return new OnnxModel(rt, session, config, file, usesGroupQueryAttention(file));
  }

  /** an export directory, with the config.json beside onnx/ */
  static openDir(rt: Runtime, dir: string): Promise<OnnxModel> {
    return OnnxModel.open(rt, dir, parseModelConfig(readConfigJson(dir), join(dir, 'config.json')));
  }

  #emptyCache(batch: number): Record<string, Tensor> {
    const feeds: Record<string, Tensor> = {};
    const dims = [batch, this.config.numKvHeads, 0, this.config.headDim];
    for (let l = 0; l < this.config.numLayers; l++) {
      feeds[`past_key_values.${l}.key`] = tensor('float32', dims);
      feeds[`past_key_values.${l}.value`] = tensor('float32', dims);
    }
    return feeds;
  }

  /** logits [B, S, V] and the new cache for ids [B, S] after `past` positions */
  async forward(ids: number[][], past: number, cache: Record<string, Tensor>): Promise<{ logits: Tensor<'float32'>; cache: Record<string, Tensor> }> {
    const B = ids.length;
    const S = ids[0]!.length;
    const feeds: Record<string, Tensor> = {
      input_ids: tensor('int64', [B, S], BigInt64Array.from(ids.flat().map(BigInt))),
      attention_mask: tensor('int64', [B, past + S], new BigInt64Array(B * (past + S)).fill(1n)),
      position_ids: tensor('int64', [B, S], BigInt64Array.from({ length: B * S }, (_, i) => BigInt(past + (i % S)))),
      ...cache,
    };
    const out = await this.#session.run(feeds).catch((e: unknown) => {
      throw new OnnxModelError('onnx-run-failed', `${this.#file}: onnxruntime failed to run it (${causeText(e, 300)})`, { file: this.#file });
    });
    const vocab = out['logits']?.dims[2];
    if (vocab !== this.config.vocabSize) {
      throw new OnnxModelError('onnx-config-mismatch', `${this.#file}: logits have ${String(vocab)} entries per token; config.json vocab_size is ${this.config.vocabSize}`, { file: this.#file, field: 'vocab_size' });
    }
    const next: Record<string, Tensor> = {};
    for (let l = 0; l < this.config.numLayers; l++) {
      next[`past_key_values.${l}.key`] = out[`present.${l}.key`]!;
      next[`past_key_values.${l}.value`] = out[`present.${l}.value`]!;
    }
    return { logits: out['logits'] as Tensor<'float32'>, cache: next };
  }

  /**
   * logits [1, T, V] of one window run GQA_WEBGPU_CHUNK positions at a time through the KV cache: the WebGPU
   * provider's GroupQueryAttention is off by ~1e-2 on prompts of 32 or more positions (or a batch of several
   * sequences), and exact to float32 rounding on chunks of 16 after a past of one sequence (docs/devices.md)
   */
  async #chunkedLogits(ids: number[]): Promise<Tensor<'float32'>> {
    const V = this.config.vocabSize;
    const logits = new Float32Array(ids.length * V);
    let cache = this.#emptyCache(1);
    for (let p = 0; p < ids.length; p += GQA_WEBGPU_CHUNK) {
      const r = await this.forward([ids.slice(p, p + GQA_WEBGPU_CHUNK)], p, cache);
      logits.set(r.logits.data, p * V);
      cache = r.cache;
    }
    return tensor('float32', [1, ids.length, V], logits);
  }

  async perplexity(windows: Tensor<'int32'>, options: PerplexityOptions = {}): Promise<PerplexityResult> {
    const t0 = performance.now();
    const [n, T] = windows.dims as [number, number];
    const chunked = this.#sharedCache && this.#rt.device === 'webgpu';
    const batch = chunked ? 1 : Math.max(1, options.batch ?? Math.max(1, Math.floor(2048 / T)));
    const head = await nllFromLogits(this.#rt, this.config.vocabSize);
    let sum = 0;
    for (let b = 0; b < n; b += batch) {
      const m = Math.min(batch, n - b);
      const ids = Array.from({ length: m }, (_, w) => Array.from(windows.data.subarray((b + w) * T, (b + w + 1) * T)));
      const logits = chunked ? await this.#chunkedLogits(ids[0]!) : (await this.forward(ids, 0, this.#emptyCache(m))).logits;
      const targets = BigInt64Array.from(ids.flatMap((w) => w.slice(1).map(BigInt)));
      const { nll } = await head.run({ logits, targets: tensor('int64', [m, T - 1, 1], targets) });
      for (const v of nll!.data as Float32Array) sum += v;
      options.onProgress?.(Math.min(n, b + m), n);
    }
    const tokens = n * (T - 1);
    if (!Number.isFinite(sum)) {
      throw new OnnxModelError('non-finite-output', `${this.#file}: the model's logits are NaN or ±Inf (total NLL ${sum}); are its weights damaged?`, { file: this.#file });
    }
    return { perplexity: Math.exp(sum / tokens), nll: sum / tokens, tokens, windows: n, seqLen: T, seconds: (performance.now() - t0) / 1000 };
  }

  /** greedy continuation of one prompt */
  async generate(prompt: number[], maxNewTokens: number, stopAtEos = true, onToken?: (n: number) => void): Promise<number[]> {
    if (this.#sharedCache) return this.#generateShared(prompt, maxNewTokens, stopAtEos, onToken);
    const seq = [...prompt];
    let cache = this.#emptyCache(1);
    let next = [prompt];
    for (let step = 0; step < maxNewTokens && seq.length < this.config.maxPositions; step++) {
      const past = step === 0 ? 0 : seq.length - 1;
      const r = await this.forward(next, past, cache);
      cache = r.cache;
      const S = next[0]!.length;
      const V = this.config.vocabSize;
      const last = r.logits.data.subarray((S - 1) * V, S * V);
      let best = 0;
      for (let v = 1; v < V; v++) if ((last[v] as number) > (last[best] as number)) best = v;
      seq.push(best);
      onToken?.(step + 1);
      if (stopAtEos && best === this.config.eosTokenId) break;
      next = [[best]];
    }
    return seq;
  }

  /** one shared buffer per layer's key and value, `length` positions (the first `filled` copied from `from`) */
  #kvBuffers(length: number, from?: { cache: Record<string, Tensor>; length: number; filled: number }): { cache: Record<string, Tensor>; into: Record<string, Tensor> } {
    const { numKvHeads: heads, headDim: hd, numLayers } = this.config;
    const cache: Record<string, Tensor> = {};
    const into: Record<string, Tensor> = {};
    for (let l = 0; l < numLayers; l++) {
      for (const kv of ['key', 'value']) {
        const t = tensor('float32', [1, heads, length, hd]);
        const old = from?.cache[`past_key_values.${l}.${kv}`]?.data as Float32Array | undefined;
        for (let h = 0; old && h < heads; h++) t.data.set(old.subarray(h * from!.length * hd, (h * from!.length + from!.filled) * hd), h * length * hd);
        cache[`past_key_values.${l}.${kv}`] = t;
        into[`present.${l}.${kv}`] = t;
      }
    }
    return { cache, into };
  }

  /** greedy decoding with GQA's shared past/present buffers, grown as the sequence fills them (kvBufferLength) */
  async #generateShared(prompt: number[], maxNewTokens: number, stopAtEos: boolean, onToken?: (n: number) => void): Promise<number[]> {
    const cfg = this.config;
    const seq = [...prompt];
    const length = Math.min(cfg.maxPositions, prompt.length + Math.max(0, maxNewTokens - 1));
    // the buffers may grow to the final length: a config.json whose sizes cannot make one is named, not a RangeError
    const values = cfg.numKvHeads * length * cfg.headDim;
    if (!Number.isSafeInteger(values) || values > KV_BUFFER_VALUES) {
      const detail = `${cfg.numKvHeads} key/value heads × ${length} positions × head_dim ${cfg.headDim}`;
      throw new OnnxModelError('onnx-config-mismatch', `${this.#file}: a KV cache of ${detail} cannot be allocated; check config.json num_key_value_heads and head_dim`, { file: this.#file, field: 'head_dim' });
    }
    let size = kvBufferLength(prompt.length, length);
    let { cache, into } = this.#kvBuffers(size);
    let next = prompt;
    for (let step = 0; step < maxNewTokens && seq.length <= length; step++) {
      const past = step === 0 ? 0 : seq.length - 1;
      const S = next.length;
      if (past + S > size) {
        const grown = kvBufferLength(past + S, length);
        ({ cache, into } = this.#kvBuffers(grown, { cache, length: size, filled: past }));
        size = grown;
      }
      const feeds: Record<string, Tensor> = {
        input_ids: tensor('int64', [1, S], BigInt64Array.from(next.map(BigInt))),
        attention_mask: tensor('int64', [1, past + S], new BigInt64Array(past + S).fill(1n)),
        position_ids: tensor('int64', [1, S], BigInt64Array.from({ length: S }, (_, i) => BigInt(past + i))),
        ...cache,
      };
      const out = await this.#session.run(feeds, undefined, into).catch((e: unknown) => {
        throw new OnnxModelError('onnx-run-failed', `${this.#file}: onnxruntime failed to run it (${causeText(e, 300)})`, { file: this.#file });
      });
      const V = cfg.vocabSize;
      if (out['logits']?.dims[2] !== V) {
        throw new OnnxModelError('onnx-config-mismatch', `${this.#file}: logits have ${String(out['logits']?.dims[2])} entries per token; config.json vocab_size is ${V}`, { file: this.#file, field: 'vocab_size' });
      }
      const logits = out['logits'].data as Float32Array;
      const last = logits.subarray((S - 1) * V, S * V);
      let best = 0;
      for (let v = 1; v < V; v++) if ((last[v] as number) > (last[best] as number)) best = v;
      seq.push(best);
      onToken?.(step + 1);
      if (stopAtEos && best === cfg.eosTokenId) break;
      next = [best];
    }
    return seq;
  }

  close(): Promise<void> {
    return this.#session.release();
  }
}
