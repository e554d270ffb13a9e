// The language-model head as onnxruntime graphs that reduce inside the session: final RMSNorm, lm_head,
// log-softmax and the negative log-likelihood of the next token (and, for a quantized model, the KL divergence
// from the full-precision distribution), so full `[B, T, vocab]` logits never cross into JavaScript.

import { Graph, type Value } from '../ort/graph.js';
import type { Kernel, Provider, Runtime } from '../ort/session.js';
import type { ModelConfig } from '../model/config.js';
import { rmsNorm, softcapped } from './decoder-graph.js';

/**
 * log-softmax over the last axis. The WebGPU provider has no LogSoftmax kernel (onnxruntime would copy the
 * [B, T, vocab] logits to the host for it), so there it is x − m − log Σ exp(x − m) with m = max x, ops WebGPU
 * runs: the same function to float32 rounding, not the same bits, so every other provider keeps LogSoftmax
 * (the CPU's perplexities stay bit-identical). A kernel is built for its Runtime's provider.
 */
export function logSoftmax(g: Graph, x: Value, provider: Provider): Value {
  if (provider !== 'webgpu') return g.op('LogSoftmax', [x], { axis: -1 });
  const shifted = g.sub(x, g.reduceMax(x, [-1]));
  return g.sub(shifted, g.op('Log', [g.reduceSum(g.op('Exp', [shifted]), [-1])]));
}

/**
 * −log p of each target, `[B, T-1]`, from log-probabilities `[B, T-1, V]` and targets `[B, T-1, 1]` (int64; fed
 * with the trailing 1, so no int64 Unsqueeze runs in the graph: the WebGPU provider has none)
 */
export function nll(g: Graph, lp: Value, targets: Value): Value {
  const picked = g.op('GatherElements', [lp, targets], { axis: -1 });
  return g.op('Neg', [g.op('Squeeze', [picked, g.ints([-1])])]);
}

function logProbs(g: Graph, cfg: ModelConfig, x: Value, norm: Value, lm: Value, provider: Provider): Value {
  // positions 0..T-2 predict tokens 1..T-1
  const h = g.op('Slice', [rmsNorm(g, x, norm, cfg.rmsNormEps, cfg.features.normOffset), g.ints([0]), g.ints([-1]), g.ints([1])]);
  const logits = softcapped(g, cfg, g.matmul(h, g.transpose(lm, [1, 0])));
  return logSoftmax(g, logits, provider);
}

/** what the head graph reads of the config beyond the shapes */
const headKey = (cfg: ModelConfig): string => `${cfg.hiddenSize}:${cfg.vocabSize}:${cfg.rmsNormEps}:${cfg.features.normOffset}:${cfg.features.finalLogitSoftcap}`;

/** nll `[B, T-1]` of each next token given hidden states `[B, T, H]` and targets `[B, T-1, 1]` */
export function nllKernel(rt: Runtime, cfg: ModelConfig): Promise<Kernel> {
  return rt.kernel(`head-nll:${headKey(cfg)}`, () => {
    const g = new Graph('head_nll');
    const x = g.input('x', 'float32', ['B', 'T', cfg.hiddenSize]);
    const norm = g.input('norm', 'float32', [cfg.hiddenSize]);
    const lm = g.input('lm_head', 'float32', [cfg.vocabSize, cfg.hiddenSize]);
    const targets = g.input('targets', 'int64', ['B', 'T1', 1]);
    g.output(nll(g, logProbs(g, cfg, x, norm, lm, rt.device), targets), 'nll');
    return g;
  });
}

/** nll of the quantized model and KL(fp ‖ quantized) per position, `[B, T-1]` each */
export function nllKlKernel(rt: Runtime, cfg: ModelConfig): Promise<Kernel> {
  return rt.kernel(`head-nll-kl:${headKey(cfg)}`, () => {
    const g = new Graph('head_nll_kl');
    const H = cfg.hiddenSize;
    const x = g.input('x', 'float32', ['B', 'T', H]);
    const norm = g.input('norm', 'float32', [H]);
    const lm = g.input('lm_head', 'float32', [cfg.vocabSize, H]);
    const xRef = g.input('x_ref', 'float32', ['B', 'T', H]);
    const normRef = g.input('norm_ref', 'float32', [H]);
    const lmRef = g.input('lm_head_ref', 'float32', [cfg.vocabSize, H]);
    const targets = g.input('targets', 'int64', ['B', 'T1', 1]);
    const lp = logProbs(g, cfg, x, norm, lm, rt.device);
    const lpRef = logProbs(g, cfg, xRef, normRef, lmRef, rt.device);
    const kl = g.reduceSum(g.mul(g.op('Exp', [lpRef]), g.sub(lpRef, lp)), [-1], false);
    g.output(nll(g, lp, targets), 'nll');
    g.output(nll(g, lpRef, targets), 'nll_ref');
    g.output(kl, 'kl');
    return g;
  });
}
