// AWQ candidate losses in onnxruntime. `candidateWeights` turns a balance weight and K candidate scale vectors
// into the K weights the search evaluates, Q(W·s)/s (min-max qparams per quantization chunk, as the search's
// memoryless observer), transposed for MatMul. A parent-loss kernel then runs the parent module once with the
// full-precision weights and once per candidate, batched along a leading K axis, and returns each candidate's
// sum of squared output errors, so no activation crosses into JavaScript.

import type { QuantArithArgs } from '../../algo/qparams.js';
import { qRange } from '../../algo/qparams.js';
import type { LinearSpec } from '../../model/arch.js';
import type { ModelConfig } from '../../model/config.js';
import { decoderLayer, matmulLinear, perTokenFakeQuant, type LinearFn } from '../../model/decoder-graph.js';
import { tensor, type Tensor } from '../../tensor.js';
import { Graph, type Value } from '../graph.js';
import type { Kernel, Runtime } from '../session.js';
import { fakeQuant } from './quant.js';

const FP32_EPS = 2 ** -23;

/** min-max qparams over the last axis of `v` (0 included) and the fake-quantized `v` */
function fakeQuantMinMax(g: Graph, v: Value, axes: readonly number[], args: QuantArithArgs): Value {
  const { qmin, qmax } = qRange(args.num_bits);
  const keep = { keepdims: 1 };
  const lo = g.op('Min', [g.op('ReduceMin', [v, g.ints(axes)], keep), g.scalar(0)]);
  const hi = g.op('Max', [g.op('ReduceMax', [v, g.ints(axes)], keep), g.scalar(0)]);
  if (args.symmetric) {
    const absMax = g.op('Max', [g.op('Abs', [lo]), g.op('Abs', [hi])]);
    const scale = g.op('Max', [g.div(absMax, g.scalar((qmax - qmin) / 2)), g.scalar(FP32_EPS)]);
    return fakeQuant(g, v, scale, null, qmin, qmax);
  }
  const scale = g.op('Max', [g.div(g.sub(hi, lo), g.scalar(qmax - qmin)), g.scalar(FP32_EPS)]);
  const zp = g.op('Round', [g.op('Clip', [g.sub(g.scalar(qmin), g.div(lo, scale)), g.scalar(qmin), g.scalar(qmax)])]);
  return fakeQuant(g, v, scale, zp, qmin, qmax);
}

/**
 * Q(W·s_k)/s_k for K candidate scale vectors `scales` [K, cols] and W [rows, cols], transposed to
 * [K, cols, rows]. Groups run along each row (a partial last group zero-padded: zeros never move min/max,
 * which include 0 anyway).
 */
export async function candidateWeights(rt: Runtime, w: Float32Array, rows: number, cols: number, scales: Float32Array, K: number, args: QuantArithArgs): Promise<Float32Array> {
  const layout = args.strategy === 'group' ? `g${args.group_size}` : args.strategy;
  const key = `awq.candidates:${rows}:${cols}:${args.num_bits}:${args.symmetric ? 's' : 'a'}:${layout}`;
  const kernel = await rt.kernel(key, () => {
    const g = new Graph('awq_candidates');
    const wv = g.input('w', 'float32', [rows, cols]);
    const sv = g.input('scales', 'float32', ['K', cols]);
    const ws = g.mul(g.op('Unsqueeze', [wv, g.ints([0])]), g.op('Unsqueeze', [sv, g.ints([1])])); // [K, rows, cols]
    let fq: Value;
    if (args.strategy === 'group') {
      const gs = args.group_size as number;
      const groups = Math.ceil(cols / gs);
      const padded = g.op('Pad', [ws, g.ints([0, 0, 0, 0, 0, groups * gs - cols])], { mode: 'constant' });
      const q = fakeQuantMinMax(g, g.reshape(padded, [-1, rows, groups, gs]), [-1], args);
      fq = g.op('Slice', [g.reshape(q, [-1, rows, groups * gs]), g.ints([0]), g.ints([cols]), g.ints([-1])]);
    } else {
      fq = fakeQuantMinMax(g, ws, args.strategy === 'tensor' ? [1, 2] : [-1], args);
    }
    g.output(g.transpose(g.div(fq, g.op('Unsqueeze', [sv, g.ints([1])])), [0, 2, 1]), 'candidates');
    return g;
  });
  const out = await kernel.run({ w: tensor('float32', [rows, cols], w), scales: tensor('float32', [K, cols], scales) });
  return out['candidates']!.data as Float32Array;
}

/** the module whose output a mapping's loss measures (llm-compressor: the balance layers' lowest common parent) */
export interface ParentModule {
  kind: 'linear' | 'mlp' | 'self_attn';
  /** the balance Linears (local names), whose weights are replaced by candidates */
  balance: readonly string[];
}

/** candidate weights enter as `<local>.candidates` [K, in, out] */
export const candidateInput = (local: string): string => `${local}.candidates`;

/** x [..., in] · cand [K, in, out] → [K, ..., out] for a 2-D x */
function candidateMatmul(g: Graph, x: Value, cand: Value, bias: Value | undefined): Value {
  const y = g.matmul(x, cand);
  return bias ? g.add(y, bias) : y;
}

function sumSquares(g: Graph, yk: Value, yFp: Value, axes: readonly number[]): Value {
  const d = g.sub(yk, yFp);
  return g.reduceSum(g.mul(d, d), axes, false);
}

interface Weights {
  get(name: string): Value;
  hasBias(local: string): boolean;
}

function weightInputs(g: Graph, specs: readonly LinearSpec[]): Weights {
  const vals = new Map<string, Value>();
  for (const l of specs) {
    vals.set(`${l.local}.weight`, g.input(`${l.local}.weight`, 'float32', [l.outFeatures, l.inFeatures]));
    if (l.bias) vals.set(`${l.local}.bias`, g.input(`${l.local}.bias`, 'float32', [l.outFeatures]));
  }
  return {
    get: (name) => {
      const v = vals.get(name);
      if (!v) throw new Error(`awq loss graph: no input "${name}"`);
      return v;
    },
    hasBias: (local) => vals.has(`${local}.bias`),
  };
}

/** a Linear parent fed its input x [M, in]: FP x·Wᵀ vs x·candidate */
function linearLoss(g: Graph, spec: LinearSpec, bits: number | undefined): void {
  const w = weightInputs(g, [spec]);
  let x = g.input('x', 'float32', ['M', spec.inFeatures]);
  if (bits !== undefined) x = perTokenFakeQuant(g, x, bits);
  const cand = g.input(candidateInput(spec.local), 'float32', ['K', spec.inFeatures, spec.outFeatures]);
  const bias = spec.bias ? w.get(`${spec.local}.bias`) : undefined;
  const yFp = matmulLinear(g, x, w.get(`${spec.local}.weight`), bias, spec.local);
  g.output(sumSquares(g, candidateMatmul(g, x, cand, bias), yFp, [1, 2]), 'sse');
}

/** the gated MLP fed its input x [M, H]: down(silu(gate x) · up x), balance layers replaced by candidates */
function mlpLoss(g: Graph, specs: readonly LinearSpec[], balance: readonly string[], actQuant: ReadonlyMap<string, number>): void {
  const find = (suffix: string): LinearSpec => {
    const s = specs.find((l) => l.local === `mlp.${suffix}`);
    if (!s) throw new Error(`awq loss graph: the layer has no mlp.${suffix}`);
    return s;
  };
  const [gate, up, down] = [find('gate_proj'), find('up_proj'), find('down_proj')];
  const w = weightInputs(g, [gate, up, down]);
  const x = g.input('x', 'float32', ['M', gate.inFeatures]);
  const cands = new Map(balance.map((b) => [b, g.input(candidateInput(b), 'float32', ['K', gate.inFeatures, gate.outFeatures])]));
  const proj = (spec: LinearSpec, input: Value, candidate: boolean): Value => {
    const bits = actQuant.get(spec.local);
    const xin = bits === undefined ? input : perTokenFakeQuant(g, input, bits);
    const bias = w.hasBias(spec.local) ? w.get(`${spec.local}.bias`) : undefined;
    const cand = candidate ? cands.get(spec.local) : undefined;
    return cand ? candidateMatmul(g, xin, cand, bias) : matmulLinear(g, xin, w.get(`${spec.local}.weight`), bias, spec.local);
  };
  const mlp = (candidate: boolean): Value => {
    const gv = proj(gate, x, candidate);
    return proj(down, g.mul(g.mul(gv, g.op('Sigmoid', [gv])), proj(up, x, candidate)), false);
  };
  g.output(sumSquares(g, mlp(true), mlp(false), [1, 2]), 'sse');
}

/**
 * Self-attention fed the layer input x [B, T, H] (its RMSNorm included): the decoder-layer graph serves both
 * passes, with 1-wide zero MLP weights so its (unused) MLP costs nothing. The candidate pass tiles x K times
 * along the batch (k-major) and routes each balance projection through its own candidate.
 */
function attentionLoss(g: Graph, cfg: ModelConfig, specs: readonly LinearSpec[], balance: readonly string[], actQuant: ReadonlyMap<string, number>): void {
  const H = cfg.hiddenSize;
  const attn = specs.filter((l) => l.local.startsWith('self_attn.'));
  const w = weightInputs(g, attn);
  const weights: Record<string, Value> = { 'input_layernorm.weight': g.input('input_layernorm.weight', 'float32', [H]) };
  for (const l of attn) {
    weights[`${l.local}.weight`] = w.get(`${l.local}.weight`);
    if (l.bias) weights[`${l.local}.bias`] = w.get(`${l.local}.bias`);
  }
  const zeros = (dims: number[]): Value => g.constant(tensor('float32', dims), 'mlp_stub');
  weights['post_attention_layernorm.weight'] = zeros([H]);
  for (const l of specs.filter((s) => s.local.startsWith('mlp.'))) weights[`${l.local}.weight`] = l.site === 'down_in' ? zeros([H, 1]) : zeros([1, H]);
  const noMlpBias = specs.map((l) => (l.local.startsWith('mlp.') ? { ...l, bias: false } : l));

  const inputs = {
    x: g.input('x', 'float32', ['B', 'T', H]),
    cos: g.input('cos', 'float32', ['T', cfg.headDim]),
    sin: g.input('sin', 'float32', ['T', cfg.headDim]),
    mask: g.input('mask', 'float32', ['T', 'T']),
  };
  const cands = new Map(balance.map((b) => {
    const spec = attn.find((l) => l.local === b)!;
    return [b, g.input(candidateInput(b), 'float32', ['K', spec.inFeatures, spec.outFeatures])] as const;
  }));
  const first = cands.values().next().value as Value;
  const K = g.op('Slice', [g.op('Shape', [first], {}, { dtype: 'int64' }), g.ints([0]), g.ints([1])]);

  const outputs: Record<string, Value> = {};
  const capture = (inner: LinearFn, tag: string): LinearFn => (gr, x, wv, bias, local) => {
    const y = inner(gr, x, wv, bias, local);
    if (local === 'self_attn.o_proj') outputs[tag] = y;
    return y;
  };
  const candidateLinear: LinearFn = (gr, x, wv, bias, local) => {
    const cand = cands.get(local);
    if (!cand) return matmulLinear(gr, x, wv, bias, local);
    const out = attn.find((l) => l.local === local)!.outFeatures;
    const inF = attn.find((l) => l.local === local)!.inFeatures;
    const grouped = gr.op('Reshape', [x, gr.op('Concat', [K, gr.ints([-1, inF])], { axis: 0 })]); // [K, B·T, in]
    const y = candidateMatmul(gr, grouped, cand, bias);
    const back = gr.op('Concat', [gr.op('Slice', [gr.op('Shape', [x], {}, { dtype: 'int64' }), gr.ints([0]), gr.ints([2])]), gr.ints([out])], { axis: 0 });
    return gr.op('Reshape', [y, back]); // [K·B, T, out]
  };
  const aq = actQuant.size > 0 ? { actQuant } : {};
  decoderLayer(g, cfg, noMlpBias, { ...inputs, weights }, { linear: capture(matmulLinear, 'fp'), ...aq });
  const tiled = g.op('Tile', [inputs.x, g.op('Concat', [K, g.ints([1, 1])], { axis: 0 })]);
  decoderLayer(g, cfg, noMlpBias, { ...inputs, x: tiled, weights }, { linear: capture(candidateLinear, 'cand'), ...aq });
  const byK = g.op('Concat', [K, g.op('Shape', [inputs.x], {}, { dtype: 'int64' })], { axis: 0 });
  g.output(sumSquares(g, g.op('Reshape', [outputs['cand']!, byK]), outputs['fp']!, [1, 2, 3]), 'sse');
}

/** the memoised loss kernel of `parent`: inputs x, weights by local name, `<balance>.candidates`; output sse [K] */
export function parentLossKernel(rt: Runtime, cfg: ModelConfig, linears: readonly LinearSpec[], parent: ParentModule, actQuant: ReadonlyMap<string, number>): Promise<Kernel> {
  const shape = [cfg.hiddenSize, cfg.intermediateSize, cfg.numHeads, cfg.numKvHeads, cfg.headDim, cfg.rmsNormEps].join(':');
  const bias = linears.map((l) => (l.bias ? 1 : 0)).join('');
  const aq = [...actQuant].map(([k, b]) => `${k}=${b}`).join(',');
  const key = `awq.loss:${parent.kind}:${parent.balance.join(',')}:${shape}:${bias}:${aq}`;
  return rt.kernel(key, () => {
    const g = new Graph(`awq_loss_${parent.kind}`);
    if (parent.kind === 'linear') {
      const spec = linears.find((l) => l.local === parent.balance[0]);
      if (!spec) throw new Error(`awq loss graph: no Linear "${parent.balance[0]}"`);
      linearLoss(g, spec, actQuant.get(spec.local));
    } else if (parent.kind === 'mlp') mlpLoss(g, linears, parent.balance, actQuant);
    else attentionLoss(g, cfg, linears, parent.balance, actQuant);
    return g;
  });
}

/** feed `kernel` from the tensors it names, in a fixed order */
export function lossFeeds(kernel: Kernel, available: Readonly<Record<string, Tensor>>): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  for (const name of kernel.inputNames) {
    const t = available[name];
    if (!t) throw new Error(`awq loss kernel: input "${name}" missing (have ${Object.keys(available).join(', ')})`);
    feeds[name] = t;
  }
  return feeds;
}
