// The language-model head as onnxruntime graphs that reduce inside the session: final RMSNorm, lm_head,
// log-softmax and the negative log-likelihood of the next token, so full `[B, T, vocab]` logits never cross
// into JavaScript. KL(fp ‖ q) needs the fp distribution p at every position, but only through two numbers of
// size H + 1: with z = W·h the quantized model's logits (the same lm_head W: stages never change it),
//   KL = Σ p log p − Σ p log q = Σ p log p − (h · Wᵀp − logsumexp z)
// so the fp evaluation keeps Σ p log p and ē = Wᵀp per position, and the quantized one needs no fp forward.

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

function headValues(g: Graph, cfg: ModelConfig, x: Value, norm: Value, lm: Value, provider: Provider): { h: Value; logits: Value; lp: Value } {
  // positions 0..T-2 predict tokens 1..T-1
  const h = g.op('Slice', [rmsNorm(g, x, norm, cfg.rmsNormEps, cfg.features.normOffset), g.ints([0]), g.ints([-1]), g.ints([1])]);
  const logits = softcapped(g, cfg, g.matmul(h, g.transpose(lm, [1, 0])));
  return { h, logits, lp: logSoftmax(g, logits, provider) };
}

const logProbs = (g: Graph, cfg: ModelConfig, x: Value, norm: Value, lm: Value, provider: Provider): Value => headValues(g, cfg, x, norm, lm, provider).lp;

/** the head's inputs; targets `[B, T-1, 1]` (int64, fed with the trailing 1: the WebGPU provider has no int64 Unsqueeze) */
function headInputs(g: Graph, cfg: ModelConfig): { x: Value; norm: Value; lm: Value; targets: Value } {
  return {
    x: g.input('x', 'float32', ['B', 'T', cfg.hiddenSize]),
    norm: g.input('norm', 'float32', [cfg.hiddenSize]),
    lm: g.input('lm_head', 'float32', [cfg.vocabSize, cfg.hiddenSize]),
    targets: g.input('targets', 'int64', ['B', 'T1', 1]),
  };
}

/**
 * Whether KL(fp ‖ q) can come from the fp evaluation's Σ p log p and ē = Wᵀp: only when the logits are linear in
 * the normed hidden state (Σ_v p_v z_v = h·ē). A final logit softcap (Gemma 3) breaks that; such a model's KL
 * runs the fp model beside the quantized one (nllKlKernel).
 */
export const klFromStatistics = (cfg: ModelConfig): boolean => cfg.features.finalLogitSoftcap === null;

function requireLinearLogits(cfg: ModelConfig): void {
  if (!klFromStatistics(cfg)) throw new Error(`KL from the fp evaluation's statistics needs linear logits; this ${cfg.modelType} model caps them (final_logit_softcapping)`);
}

/** what the head graph reads of the config beyond the shapes */
const headKey = (cfg: ModelConfig): string => `${cfg.hiddenSize}:${cfg.vocabSize}:${cfg.rmsNormEps}:${cfg.features.normOffset}:${cfg.features.finalLogitSoftcap}`;

/** −log p of each target, `[B, T-1]`, from log-probabilities `[B, T-1, V]` and targets `[B, T-1, 1]` */
export function nll(g: Graph, lp: Value, targets: Value): Value {
  const picked = g.op('GatherElements', [lp, targets], { axis: -1 });
  return g.op('Neg', [g.op('Squeeze', [picked, g.ints([-1])])]);
}

/** nll `[B, T-1]` of each next token given hidden states `[B, T, H]` and targets `[B, T-1, 1]` */
export function nllKernel(rt: Runtime, cfg: ModelConfig): Promise<Kernel> {
  return rt.kernel(`head-nll:${headKey(cfg)}`, () => {
    const g = new Graph('head_nll');
    const i = headInputs(g, cfg);
    g.output(nll(g, logProbs(g, cfg, i.x, i.norm, i.lm, rt.device), i.targets), 'nll');
    return g;
  });
}

/** the fp head: nll, and per position Σ p log p (`negent`, [B, T-1]) and ē = Wᵀp (`ebar`, [B, T-1, H]) for KL later */
export function nllKlReferenceKernel(rt: Runtime, cfg: ModelConfig): Promise<Kernel> {
  requireLinearLogits(cfg);
  return rt.kernel(`head-nll-klref:${headKey(cfg)}`, () => {
    const g = new Graph('head_nll_klref');
    const i = headInputs(g, cfg);
    const lp = logProbs(g, cfg, i.x, i.norm, i.lm, rt.device);
    const p = g.op('Exp', [lp]);
    g.output(nll(g, lp, i.targets), 'nll');
    g.output(g.reduceSum(g.mul(p, lp), [-1], false), 'negent');
    g.output(g.matmul(p, i.lm), 'ebar');
    return g;
  });
}

/** the quantized head: nll, and KL(fp ‖ q) per position from the fp evaluation's `negent` and `ebar` */
export function nllKlFromReferenceKernel(rt: Runtime, cfg: ModelConfig): Promise<Kernel> {
  requireLinearLogits(cfg);
  return rt.kernel(`head-nll-kl-from-ref:${headKey(cfg)}`, () => {
    const g = new Graph('head_nll_kl_from_ref');
    const i = headInputs(g, cfg);
    const negent = g.input('negent', 'float32', ['B', 'T1']);
    const ebar = g.input('ebar', 'float32', ['B', 'T1', cfg.hiddenSize]);
    const { h, logits, lp } = headValues(g, cfg, i.x, i.norm, i.lm, rt.device);
    // logsumexp z = z − log softmax z, read at token 0
    const first = (v: Value): Value => g.op('Squeeze', [g.op('Slice', [v, g.ints([0]), g.ints([1]), g.ints([-1])]), g.ints([-1])]);
    const lse = g.sub(first(logits), first(lp));
    const cross = g.sub(g.reduceSum(g.mul(h, ebar), [-1], false), lse);
    g.output(nll(g, lp, i.targets), 'nll');
    g.output(g.sub(negent, cross), 'kl');
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
