// Autoregressive decoding with a KV cache over a WeightSource: each step runs the new positions through every
// layer (memoised cached-attention graph), appends keys/values, and picks the next token from the last
// position's logits (greedy, or sampled with a seeded generator). Used by `quantforge generate` on HF and
// compressed-tensors directories and to sample the example model's text.

import { Graph } from '../ort/graph.js';
import type { Kernel, Runtime } from '../ort/session.js';
import { tensor, type Tensor } from '../tensor.js';
import type { ModelConfig } from '../model/config.js';
import { decoderLayer, layerWeightInputs, rmsNorm, softcapped } from './decoder-graph.js';
import { embed } from '../model/embed.js';
import { attentionMask, ropeTables } from './rope.js';
import { layerShapeKey } from './layer-shape.js';
import type { WeightSource } from '../model/source.js';
import type { LayerSpec } from '../model/arch.js';
import { seededRandom } from '../random.js';
import { actQuantKey, type ActQuant } from '../quant/module-quant.js';

function cachedLayerKernel(rt: Runtime, cfg: ModelConfig, layer: LayerSpec, actQuant: ActQuant): Promise<Kernel> {
  const aq = actQuantKey(actQuant);
  const linears = layer.linears;
  return rt.kernel(`decoder-cached:${layerShapeKey(cfg, linears, layer.norms)}:${aq}`, () => {
    const g = new Graph('decoder_layer_cached');
    const kv = ['B', cfg.numKvHeads, 'P', cfg.headDim];
    const values = decoderLayer(
      g,
      cfg,
      linears,
      {
        x: g.input('x', 'float32', ['B', 'S', cfg.hiddenSize]),
        cos: g.input('cos', 'float32', ['S', cfg.headDim]),
        sin: g.input('sin', 'float32', ['S', cfg.headDim]),
        mask: g.input('mask', 'float32', ['S', 'PS']),
        weights: layerWeightInputs(g, layer.norms, linears),
        past: { key: g.input('past_key', 'float32', kv), value: g.input('past_value', 'float32', kv) },
      },
      { actQuant },
    );
    g.output(values.out, 'out');
    g.output(values.present!.key, 'present_key');
    g.output(values.present!.value, 'present_value');
    return g;
  });
}

function lastLogitsKernel(rt: Runtime, cfg: ModelConfig): Promise<Kernel> {
  const f = cfg.features;
  return rt.kernel(`head-last-logits:${cfg.hiddenSize}:${cfg.vocabSize}:${cfg.rmsNormEps}:${f.normOffset}:${f.finalLogitSoftcap}`, () => {
    const g = new Graph('head_last_logits');
    const x = g.input('x', 'float32', ['B', 'S', cfg.hiddenSize]);
    const norm = g.input('norm', 'float32', [cfg.hiddenSize]);
    const lm = g.input('lm_head', 'float32', [cfg.vocabSize, cfg.hiddenSize]);
    const last = g.op('Squeeze', [g.op('Slice', [x, g.ints([-1]), g.ints([2 ** 31 - 1]), g.ints([1])]), g.ints([1])]);
    g.output(softcapped(g, cfg, g.matmul(rmsNorm(g, last, norm, cfg.rmsNormEps, f.normOffset), g.transpose(lm, [1, 0]))), 'logits');
    return g;
  });
}

export interface GenerateOptions {
  maxNewTokens: number;
  /** 0 = greedy */
  temperature?: number;
  seed?: number;
  /** stop a sequence at the model's EOS (greedy generation for users); sampling for datasets keeps going */
  stopAtEos?: boolean;
  /** sample only these ids (e.g. whole-word pieces when sampling a dataset) */
  allowedIds?: readonly number[];
  onToken?: (step: number) => void;
}

function pick(logits: Float32Array, offset: number, ids: readonly number[], temperature: number, rand: () => number): number {
  let best = ids[0] as number;
  let bestV = -Infinity;
  for (const v of ids) {
    const l = logits[offset + v] as number;
    if (l > bestV) [best, bestV] = [v, l];
  }
  if (temperature <= 0) return best;
  let sum = 0;
  const p = new Float64Array(ids.length);
  ids.forEach((v, i) => (sum += p[i] = Math.exp(((logits[offset + v] as number) - bestV) / temperature)));
  let r = rand() * sum;
  for (let i = 0; i < ids.length; i++) if ((r -= p[i] as number) <= 0) return ids[i] as number;
  return ids[ids.length - 1] as number;
}

/** continue each prompt (all of equal length) by up to `maxNewTokens` tokens; returns prompt + continuation */
export async function generate(rt: Runtime, src: WeightSource, prompts: readonly number[][], o: GenerateOptions): Promise<number[][]> {
  const cfg = src.config;
  const B = prompts.length;
  const L0 = prompts[0]?.length ?? 0;
  if (prompts.some((p) => p.length !== L0) || L0 === 0) throw new Error('generate: prompts must be non-empty and of equal length');
  const specs = Array.from({ length: cfg.numLayers }, (_, l) => src.arch.layer(cfg, l));
  const layers = await Promise.all(specs.map((_, l) => src.layer(l)));
  const kernels = await Promise.all(specs.map((spec, l) => cachedLayerKernel(rt, cfg, spec, src.actQuant(l))));
  const head = await lastLogitsKernel(rt, cfg);
  const emb = await src.tensor(src.arch.embedding);
  const norm = await src.tensor(src.arch.finalNorm);
  const lm = await src.tensor(src.arch.lmHeadWeight(cfg));
  const rand = seededRandom(o.seed ?? 0);
  const allowed = o.allowedIds ?? Array.from({ length: cfg.vocabSize }, (_, i) => i);
  const kvShape = (P: number): number[] => [B, cfg.numKvHeads, P, cfg.headDim];
  let past: { key: Tensor; value: Tensor }[] = layers.map(() => ({ key: tensor('float32', kvShape(0)), value: tensor('float32', kvShape(0)) }));
  const seqs = prompts.map((p) => [...p]);
  const finished = new Array<boolean>(B).fill(false);
  let next: readonly number[][] = prompts;
  for (let step = 0; step < o.maxNewTokens && L0 + step < cfg.maxPositions; step++) {
    const P = step === 0 ? 0 : L0 + step - 1;
    const S = next[0]!.length;
    const positions = Array.from({ length: S }, (_, i) => P + i);
    let x: Tensor = tensor('float32', [B, S, cfg.hiddenSize], embed(emb, next.flat(), cfg.features.embedScale));
    const present: { key: Tensor; value: Tensor }[] = [];
    for (let l = 0; l < cfg.numLayers; l++) {
      const { rope, window } = specs[l]!.attention;
      const feeds: Record<string, Tensor> = { x, ...ropeTables(cfg, rope, positions), mask: attentionMask(S, P, window), past_key: past[l]!.key, past_value: past[l]!.value, ...layers[l]! };
      const out = await kernels[l]!.run(feeds);
      x = out['out']!;
      present.push({ key: out['present_key']!, value: out['present_value']! });
    }
    past = present;
    const logits = (await head.run({ x, norm, lm_head: lm }))['logits']!.data as Float32Array;
    next = seqs.map((seq, b) => {
      const id = finished[b] ? (cfg.eosTokenId ?? 0) : pick(logits, b * cfg.vocabSize, allowed, o.temperature ?? 0, rand);
      if (!finished[b]) seq.push(id);
      if (o.stopAtEos && id === cfg.eosTokenId) finished[b] = true;
      return [id];
    });
    o.onToken?.(step + 1);
    if (finished.every(Boolean)) break;
  }
  return seqs;
}
