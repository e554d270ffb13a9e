// AWQ candidate losses in onnxruntime. `candidateWeights` turns a balance weight and K candidate scale vectors
// into the K weights the search evaluates, Q(W·s)/s (min-max qparams per quantization chunk, as llm-compressor's
// memoryless observer during the search), laid out [in, K, out]. A parent-loss kernel runs the parent module
// once with the full-precision weights and once for all K candidates (one GEMM per balance projection, a K axis
// through the rest) and returns each candidate's sum of squared output errors: no activation leaves the graph.
// A Linear parent needs no pass over the tokens per candidate: with G = XᵀX of its input (one tap on the layer),
// ‖X(W − Q)ᵀ‖² = Σ over rows d of d·G·dᵀ with d a row of W − Q (the bias cancels), `gramLossKernel`.

import { FP32_EPS, qRange, type QuantArithArgs } from '../quant/qparams.js';
import type { LayerSpec, LinearSpec } from '../model/arch.js';
import type { ModelConfig } from '../model/config.js';
import { activation, attention, attentionInputs, layerParts, matmulLinear, roleLocal, type DecoderOptions, type LinearFn } from './decoder-graph.js';
import { layerShapeKey } from './layer-shape.js';
import { routingWeights } from './moe-block.js';
import { activationFakeQuant } from './act-quant.js';
import { actQuantKey, type ActQuant } from '../quant/module-quant.js';
import type { QuantArgs } from '../quant/quant-args.js';
import { tensor, type Tensor } from '../tensor.js';
import { Graph, type Value } from '../ort/graph.js';
import type { Kernel, KernelOptions, Runtime } from '../ort/session.js';
import { fakeQuant } from '../ort/kernels/quant.js';
import { ggufBlockFakeQuant, isGraphBlockType } from './gguf-fake-quant.js';
import type { GgufBlockTypeName } from '../quant/gguf-quantize.js';

/**
 * AWQ kernels run a few long ops many times per mapping: their threads sleep between ops rather than spin. Where the
 * largest weight has ≤ 2^20 values (the shared models), fresh buffers' page faults add up over the short loss calls, so
 * their freed buffers stay in the session's arena until `releaseAwqKernels` (after each mapping); the candidate weights
 * (one call per chunk) keep no arena, whose K-weight-sized buffers would sit beside the loss kernels' all mapping long.
 */
const awqKernel = (largest: number): KernelOptions => ({ spin: false, arena: largest <= 2 ** 20 });

/** release every AWQ kernel (sessions and arenas): the awq steps call it after each mapping's search */
export const releaseAwqKernels = (rt: Runtime): Promise<void> => rt.release('awq.');

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
  const zp = g.roundHalfEven(g.op('Clip', [g.sub(g.scalar(qmin), g.div(lo, scale)), g.scalar(qmin), g.scalar(qmax)]));
  return fakeQuant(g, v, scale, zp, qmin, qmax);
}

/** the quantizer of a candidate: integer min-max args, or (with `gguf`) a 32-weight GGUF block type */
export type CandidateArgs = QuantArithArgs & { readonly gguf?: GgufBlockTypeName | undefined };

/**
 * Q(W·s_k)/s_k for K candidate scale vectors `scales` [K, cols] and W [rows, cols], laid out [cols, K, rows] so a
 * loss graph multiplies every candidate in one GEMM. Groups run along each row (a partial last group is
 * zero-padded: zeros never move min/max, which include 0 anyway). GGUF args quantize with ggml's reference
 * block quantizer (graphs/gguf-fake-quant.ts: float16 block scales, ggml's rounding), whole blocks only.
 */
export async function candidateWeights(rt: Runtime, w: Float32Array, rows: number, cols: number, scales: Float32Array, K: number, args: CandidateArgs, into?: Float32Array): Promise<Float32Array> {
  const gguf = args.gguf;
  if (gguf !== undefined && (!isGraphBlockType(gguf) || cols % 32 !== 0)) throw new RangeError(`awq candidates: GGUF ${gguf} on ${cols} columns has no block graph (Q8_0, Q4_0, Q4_1, Q5_0 on whole blocks of 32)`);
  const layout = gguf !== undefined ? `gguf${gguf}` : args.strategy === 'group' ? `g${args.group_size}` : args.strategy;
  const key = `awq.candidates:${rows}:${cols}:${args.num_bits}:${args.symmetric ? 's' : 'a'}:${layout}`;
  const kernel = await rt.kernel(key, () => {
    const g = new Graph('awq_candidates');
    const wv = g.input('w', 'float32', [rows, cols]);
    const sv = g.op('Unsqueeze', [g.input('scales', 'float32', ['K', cols]), g.ints([1])]);
    const ws = g.mul(g.op('Unsqueeze', [wv, g.ints([0])]), sv); // [K, rows, cols]
    let fq: Value;
    if (gguf !== undefined && isGraphBlockType(gguf)) {
      fq = g.reshape(ggufBlockFakeQuant(g, g.reshape(ws, [-1, rows, cols / 32, 32]), gguf), [-1, rows, cols]);
    } else if (args.strategy === 'group') {
      const gs = args.group_size as number;
      const groups = Math.ceil(cols / gs);
      const ragged = groups * gs !== cols;
      const padded = ragged ? g.op('Pad', [ws, g.ints([0, 0, 0, 0, 0, groups * gs - cols])], { mode: 'constant' }) : ws;
      const q = g.reshape(fakeQuantMinMax(g, g.reshape(padded, [-1, rows, groups, gs]), [-1], args), [-1, rows, groups * gs]);
      fq = ragged ? g.op('Slice', [q, g.ints([0]), g.ints([cols]), g.ints([-1])]) : q;
    } else {
      fq = fakeQuantMinMax(g, ws, args.strategy === 'tensor' ? [1, 2] : [-1], args);
    }
    g.output(g.transpose(g.div(fq, sv), [2, 0, 1]), 'candidates', [cols, 'K', rows]);
    return g;
  }, { spin: false });
  const feeds = { w: tensor('float32', [rows, cols], w), scales: tensor('float32', [K, cols], scales) };
  // `into` (≥ K·rows·cols values): onnxruntime writes the candidates there, no output buffer or copy of its own
  return (await kernel.run(feeds, undefined, into ? { candidates: tensor('float32', [cols, K, rows], into.subarray(0, K * rows * cols)) } : undefined))['candidates']!.data as Float32Array;
}

/** the module whose output a mapping's loss measures (llm-compressor: the balance layers' lowest common parent) */
export interface ParentModule {
  kind: 'linear' | 'mlp' | 'self_attn';
  /** the balance Linears (local names), whose weights are replaced by candidates */
  balance: readonly string[];
}

/** candidate weights enter as `<local>.candidates` [in, K, out] */
export const candidateInput = (local: string): string => `${local}.candidates`;

const shapeOf = (g: Graph, v: Value, start: number, end?: number): Value => g.op('Shape', [v], end === undefined ? { start } : { start, end }, { dtype: 'int64' });

/** x [..., in] → [..., K, out]: every candidate's output in one GEMM */
function candidateMatmul(g: Graph, x: Value, cand: Value, inF: number, outF: number, bias: Value | undefined): Value {
  const y = g.matmul(x, g.reshape(cand, [inF, -1]));
  const split = g.op('Reshape', [y, g.op('Concat', [shapeOf(g, x, 0, -1), g.ints([-1, outF])], { axis: 0 })]);
  return bias ? g.add(split, bias) : split;
}

function sumSquares(g: Graph, yk: Value, yFp: Value, axes: readonly number[]): Value {
  const d = g.sub(yk, yFp);
  return g.output(g.reduceSum(g.mul(d, d), axes, false), 'sse', ['K']);
}

interface Weights { get(name: string): Value; bias(spec: LinearSpec): Value | undefined }

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
    bias: (spec) => vals.get(`${spec.local}.bias`),
  };
}

/** a balance Linear's input fake-quantized as its input args say (AWQ runs with dynamic input quantization only: stages/awq.ts refuses static) */
export function actInput(g: Graph, x: Value, a: QuantArgs, spec: LinearSpec): Value {
  return activationFakeQuant(g, x, a, spec.inFeatures, spec.local, (name) => {
    throw new Error(`awq loss graph: ${name} is a static input scale; AWQ supports dynamic input quantization only`);
  });
}

const candidateValue = (g: Graph, spec: LinearSpec): Value => g.input(candidateInput(spec.local), 'float32', [spec.inFeatures, 'K', spec.outFeatures]);

/** a Linear parent fed its input x [M, in]: FP x·Wᵀ vs every candidate, as [M, K, out] */
function linearLoss(g: Graph, spec: LinearSpec, a: QuantArgs | undefined): void {
  const w = weightInputs(g, [spec]);
  let x = g.input('x', 'float32', ['M', spec.inFeatures]);
  if (a !== undefined) x = actInput(g, x, a, spec);
  const yFp = matmulLinear(g, x, w.get(`${spec.local}.weight`), w.bias(spec), spec.local);
  const yk = candidateMatmul(g, x, candidateValue(g, spec), spec.inFeatures, spec.outFeatures, w.bias(spec));
  sumSquares(g, yk, g.op('Unsqueeze', [yFp, g.ints([1])]), [0, 2]);
}

/**
 * The MLP fed its input x [M, H], balance layers replaced by candidates: down(act(gate x) · up x), or for an
 * MoE layer Σₑ wₑ(x)·expertₑ(x) with the full-precision router's routing weights (every expert computed)
 */
function mlpLoss(g: Graph, cfg: ModelConfig, specs: readonly LinearSpec[], balance: readonly string[], actQuant: ActQuant): void {
  const mlpSpecs = specs.filter((l) => l.role === 'gate' || l.role === 'up' || l.role === 'down' || l.role === 'router');
  const w = weightInputs(g, mlpSpecs);
  const x = g.input('x', 'float32', ['M', cfg.hiddenSize]);
  const cands = new Map(mlpSpecs.filter((s) => balance.includes(s.local)).map((s) => [s.local, candidateValue(g, s)]));
  const proj = (spec: LinearSpec, input: Value, candidate: boolean): Value => {
    const a = actQuant.get(spec.local);
    const xin = a === undefined ? input : actInput(g, input, a, spec);
    const cand = candidate ? cands.get(spec.local) : undefined;
    if (cand) return candidateMatmul(g, xin, cand, spec.inFeatures, spec.outFeatures, w.bias(spec));
    const y = matmulLinear(g, xin, w.get(`${spec.local}.weight`), w.bias(spec), spec.local);
    return spec.role === 'down' || spec.role === 'router' ? y : g.op('Unsqueeze', [y, g.ints([1])]); // [M, 1, out] beside [M, K, out]
  };
  const find = (role: string, expert?: number): LinearSpec => {
    const s = mlpSpecs.find((l) => l.role === role && l.expert === expert);
    if (!s) throw new Error(`awq loss graph: the layer has no ${role} Linear${expert === undefined ? '' : ` for expert ${expert}`}`);
    return s;
  };
  const expert = (candidate: boolean, e?: number): Value => {
    const gv = proj(find('gate', e), x, candidate);
    return proj(find('down', e), g.mul(activation(g, cfg, gv), proj(find('up', e), x, candidate)), false);
  };
  const router = mlpSpecs.find((l) => l.role === 'router');
  if (!router) {
    sumSquares(g, expert(true), expert(false), [0, 2]);
    return;
  }
  const routing = routingWeights(g, cfg, proj(router, x, false)); // [M, E]
  const experts = [...new Set(mlpSpecs.flatMap((l) => (l.expert === undefined ? [] : [l.expert])))];
  const moe = (candidate: boolean): Value =>
    experts
      .map((e) => g.mul(expert(candidate, e), g.op('Unsqueeze', [g.op('Slice', [routing, g.ints([e]), g.ints([e + 1]), g.ints([-1])]), g.ints([1])])))
      .reduce((a, b) => g.add(a, b));
  sumSquares(g, moe(true), moe(false), [0, 2]);
}

/**
 * Self-attention fed the layer input x [B, T, H] (its RMSNorm included), built from the decoder graph's
 * attention pieces. The candidate pass runs them on a batch of K·B (k-major) with a 1-wide placeholder input:
 * q/k/v come from the full-precision attn_in, one GEMM for all candidates of a balance projection, and
 * everything after them (q/k norms, RoPE, attention, o_proj) runs once per candidate.
 */
function attentionLoss(g: Graph, cfg: ModelConfig, layer: LayerShape, balance: readonly string[], actQuant: ActQuant): void {
  const attn = layer.linears.filter((l) => l.site === 'attn_in' || l.site === 'o_in');
  const w = weightInputs(g, attn);
  const weights: Record<string, Value> = {};
  for (const n of layer.norms.filter((n) => n.local === 'input_layernorm.weight' || n.local.startsWith('self_attn.'))) weights[n.local] = g.input(n.local, 'float32', [n.size]);
  for (const l of attn) {
    weights[`${l.local}.weight`] = w.get(`${l.local}.weight`);
    const b = w.bias(l);
    if (b) weights[`${l.local}.bias`] = b;
  }
  const x = g.input('x', 'float32', ['B', 'T', cfg.hiddenSize]);
  const cands = new Map(attn.filter((s) => balance.includes(s.local)).map((s) => [s.local, candidateValue(g, s)]));
  const K = g.op('Slice', [shapeOf(g, cands.values().next().value as Value, 0), g.ints([1]), g.ints([2])]);
  // activation fake-quant of the attention's Linears only
  const attnQuant: ActQuant = new Map([...actQuant].filter(([local]) => attn.some((l) => l.local === local)));
  const aq = attnQuant.size > 0 ? { actQuant: attnQuant } : {};
  const tileK = (v: Value, rank: number): Value => g.op('Tile', [v, g.op('Concat', [K, g.ints(Array.from({ length: rank - 1 }, () => 1))], { axis: 0 })]); // [B, ...] → [K·B, ...]
  // the basic-op attention on every provider, as all calibration (steps/activations.ts forEachBatch)
  const block = basicAttentionBlock(g, cfg, attn, weights);
  const fp = block.run(x, { linear: matmulLinear, ...aq });
  const candidateLinear: LinearFn = (gr, xv, wv, bias, local) => {
    const spec = attn.find((l) => l.local === local);
    if (!spec || spec.site !== 'attn_in') return matmulLinear(gr, xv, wv, bias, local);
    const a = attnQuant.get(local);
    const base = a === undefined ? fp.attnIn : actInput(gr, fp.attnIn, a, spec);
    const cand = cands.get(local);
    if (!cand) return tileK(matmulLinear(gr, base, wv, bias, local), 3);
    const y = candidateMatmul(gr, base, cand, spec.inFeatures, spec.outFeatures, bias); // [B, T, K, out]
    const kMajor = gr.transpose(y, [2, 0, 1, 3]);
    return gr.op('Reshape', [kMajor, gr.op('Concat', [gr.ints([-1]), shapeOf(gr, fp.attnIn, 1, 2), gr.ints([spec.outFeatures])], { axis: 0 })]);
  };
  // the placeholder only gives the candidate pass its K·B batch; q/k/v ignore it
  const cand = block.run(tileK(g.reduceMean(x, [-1]), 3), { linear: candidateLinear, ...aq });
  const byK = g.op('Concat', [K, shapeOf(g, x, 0)], { axis: 0 });
  sumSquares(g, g.op('Reshape', [cand.out, byK]), fp.out, [1, 2, 3]);
}

interface AttentionBlock {
  /** the attention on `x`: its input after the norm, and o_proj's output */
  run(x: Value, options: DecoderOptions): { attnIn: Value; out: Value };
}

/** the decoder graph's attention pieces (q/k norms, RoPE tables and the mask as inputs, o_proj) */
function basicAttentionBlock(g: Graph, cfg: ModelConfig, attn: readonly LinearSpec[], weights: Record<string, Value>): AttentionBlock {
  const cos = g.input('cos', 'float32', ['T', cfg.headDim]);
  const sin = g.input('sin', 'float32', ['T', cfg.headDim]);
  const mask = g.input('mask', 'float32', ['T', 'T']);
  return {
    run(input, options) {
      const p = layerParts(g, cfg, attn, weights, options);
      const a = attentionInputs(p, input, cos, sin);
      return { attnIn: a.attnIn, out: p.proj(roleLocal(attn, 'o'), attention(g, cfg, a.q, a.k, a.v, mask)) };
    },
  };
}

/** a layer's Linears, norms and attention, as the loss kernels read them */
export type LayerShape = Pick<LayerSpec, 'linears' | 'norms' | 'attention'>;

/** the memoised loss kernel of `parent`: inputs x, weights by local name, `<balance>.candidates`; output sse [K] */
export function parentLossKernel(rt: Runtime, cfg: ModelConfig, layer: LayerShape, parent: ParentModule, actQuant: ActQuant): Promise<Kernel> {
  const linears = layer.linears;
  const key = `awq.loss:${parent.kind}:${parent.balance.join(',')}:${layerShapeKey(cfg, linears, layer.norms)}:${actQuantKey(actQuant)}`;
  return rt.kernel(key, () => {
    const g = new Graph(`awq_loss_${parent.kind}`);
    if (parent.kind === 'linear') {
      const spec = linears.find((l) => l.local === parent.balance[0]);
      if (!spec) throw new Error(`awq loss graph: no Linear "${parent.balance[0]}"`);
      linearLoss(g, spec, actQuant.get(spec.local));
    } else if (parent.kind === 'mlp') mlpLoss(g, cfg, linears, parent.balance, actQuant);
    else attentionLoss(g, cfg, layer, parent.balance, actQuant);
    return g;
  }, awqKernel(Math.max(...linears.map((l) => l.inFeatures * l.outFeatures))));
}

/**
 * Σ over rows of d·G·dᵀ, d = W − Q_k, for every candidate k: inputs `w` [rows, cols], `candidates` [cols, K, rows]
 * (candidateWeights' layout), `gram` [cols, cols] (XᵀX of the Linear's input, float32); output sse [K]
 */
export function gramLossKernel(rt: Runtime, rows: number, cols: number): Promise<Kernel> {
  return rt.kernel(`awq.gram-loss:${rows}:${cols}`, () => {
    const g = new Graph('awq_gram_loss');
    const w = g.input('w', 'float32', [rows, cols]);
    const cand = g.input('candidates', 'float32', [cols, 'K', rows]);
    const gram = g.input('gram', 'float32', [cols, cols]);
    const d = g.sub(g.op('Unsqueeze', [g.transpose(w, [1, 0]), g.ints([1])]), cand); // [cols, K, rows]
    const gd = g.reshape(g.matmul(gram, g.reshape(d, [cols, -1])), [cols, -1, rows]);
    g.output(g.reduceSum(g.mul(gd, d), [0, 2], false), 'sse', ['K']);
    return g;
  }, awqKernel(rows * cols));
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
