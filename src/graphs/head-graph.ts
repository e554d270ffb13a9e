// The language-model head as onnxruntime graphs that reduce inside the session: final RMSNorm, lm_head,
// log-softmax and the negative log-likelihood of the next token (and, for a quantized model, the KL divergence
// from the full-precision distribution), so full `[B, T, vocab]` logits never cross into JavaScript.

import { Graph, type Value } from '../ort/graph.js';
import type { Kernel, Runtime } from '../ort/session.js';
import type { ModelConfig } from '../model/config.js';
import { rmsNorm } from './decoder-graph.js';

function logProbs(g: Graph, x: Value, norm: Value, lm: Value, eps: number): Value {
  // positions 0..T-2 predict tokens 1..T-1
  const h = g.op('Slice', [rmsNorm(g, x, norm, eps), g.ints([0]), g.ints([-1]), g.ints([1])]);
  const logits = g.matmul(h, g.transpose(lm, [1, 0]));
  return g.op('LogSoftmax', [logits], { axis: -1 });
}

function nll(g: Graph, lp: Value, targets: Value): Value {
  const picked = g.op('GatherElements', [lp, g.op('Unsqueeze', [targets, g.ints([-1])])], { axis: -1 });
  return g.op('Neg', [g.op('Squeeze', [picked, g.ints([-1])])]);
}

/** nll `[B, T-1]` of each next token given hidden states `[B, T, H]` */
export function nllKernel(rt: Runtime, cfg: ModelConfig): Promise<Kernel> {
  return rt.kernel(`head-nll:${cfg.hiddenSize}:${cfg.vocabSize}:${cfg.rmsNormEps}`, () => {
    const g = new Graph('head_nll');
    const x = g.input('x', 'float32', ['B', 'T', cfg.hiddenSize]);
    const norm = g.input('norm', 'float32', [cfg.hiddenSize]);
    const lm = g.input('lm_head', 'float32', [cfg.vocabSize, cfg.hiddenSize]);
    const targets = g.input('targets', 'int64', ['B', 'T1']);
    g.output(nll(g, logProbs(g, x, norm, lm, cfg.rmsNormEps), targets), 'nll');
    return g;
  });
}

/** nll of the quantized model and KL(fp ‖ quantized) per position, `[B, T-1]` each */
export function nllKlKernel(rt: Runtime, cfg: ModelConfig): Promise<Kernel> {
  return rt.kernel(`head-nll-kl:${cfg.hiddenSize}:${cfg.vocabSize}:${cfg.rmsNormEps}`, () => {
    const g = new Graph('head_nll_kl');
    const H = cfg.hiddenSize;
    const x = g.input('x', 'float32', ['B', 'T', H]);
    const norm = g.input('norm', 'float32', [H]);
    const lm = g.input('lm_head', 'float32', [cfg.vocabSize, H]);
    const xRef = g.input('x_ref', 'float32', ['B', 'T', H]);
    const normRef = g.input('norm_ref', 'float32', [H]);
    const lmRef = g.input('lm_head_ref', 'float32', [cfg.vocabSize, H]);
    const targets = g.input('targets', 'int64', ['B', 'T1']);
    const lp = logProbs(g, x, norm, lm, cfg.rmsNormEps);
    const lpRef = logProbs(g, xRef, normRef, lmRef, cfg.rmsNormEps);
    const kl = g.reduceSum(g.mul(g.op('Exp', [lpRef]), g.sub(lpRef, lp)), [-1], false);
    g.output(nll(g, lp, targets), 'nll');
    g.output(nll(g, lpRef, targets), 'nll_ref');
    g.output(kl, 'kl');
    return g;
  });
}
