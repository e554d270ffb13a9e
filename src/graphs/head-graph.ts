// The language-model head as onnxruntime graphs that reduce inside the session: final RMSNorm, lm_head,
// log-softmax and the negative log-likelihood of the next token (and, for a quantized model, the KL divergence
// from the full-precision distribution), so full `[B, T, vocab]` logits never cross into JavaScript.

import { Graph, type Value } from '../ort/graph.js';
import type { Kernel, Runtime } from '../ort/session.js';
import type { ModelConfig } from '../model/config.js';
import { rmsNorm, softcapped } from './decoder-graph.js';

function logProbs(g: Graph, cfg: ModelConfig, x: Value, norm: Value, lm: Value): Value {
  // positions 0..T-2 predict tokens 1..T-1
  const h = g.op('Slice', [rmsNorm(g, x, norm, cfg.rmsNormEps, cfg.features.normOffset), g.ints([0]), g.ints([-1]), g.ints([1])]);
  const logits = softcapped(g, cfg, g.matmul(h, g.transpose(lm, [1, 0])));
  return g.op('LogSoftmax', [logits], { axis: -1 });
}

/** what the head graph reads of the config beyond the shapes */
const headKey = (cfg: ModelConfig): string => `${cfg.hiddenSize}:${cfg.vocabSize}:${cfg.rmsNormEps}:${cfg.features.normOffset}:${cfg.features.finalLogitSoftcap}`;

function nll(g: Graph, lp: Value, targets: Value): Value {
  const picked = g.op('GatherElements', [lp, g.op('Unsqueeze', [targets, g.ints([-1])])], { axis: -1 });
  return g.op('Neg', [g.op('Squeeze', [picked, g.ints([-1])])]);
}

/** nll `[B, T-1]` of each next token given hidden states `[B, T, H]` */
export function nllKernel(rt: Runtime, cfg: ModelConfig): Promise<Kernel> {
  return rt.kernel(`head-nll:${headKey(cfg)}`, () => {
    const g = new Graph('head_nll');
    const x = g.input('x', 'float32', ['B', 'T', cfg.hiddenSize]);
    const norm = g.input('norm', 'float32', [cfg.hiddenSize]);
    const lm = g.input('lm_head', 'float32', [cfg.vocabSize, cfg.hiddenSize]);
    const targets = g.input('targets', 'int64', ['B', 'T1']);
    g.output(nll(g, logProbs(g, cfg, x, norm, lm), targets), 'nll');
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
    const targets = g.input('targets', 'int64', ['B', 'T1']);
    const lp = logProbs(g, cfg, x, norm, lm);
    const lpRef = logProbs(g, cfg, xRef, normRef, lmRef);
    const kl = g.reduceSum(g.mul(g.op('Exp', [lpRef]), g.sub(lpRef, lp)), [-1], false);
    g.output(nll(g, lp, targets), 'nll');
    g.output(nll(g, lpRef, targets), 'nll_ref');
    g.output(kl, 'kl');
    return g;
  });
}
