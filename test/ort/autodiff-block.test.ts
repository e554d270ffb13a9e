import { afterAll, describe, expect, test } from 'vitest';
import { gradients } from '../../src/ort/autodiff.js';
import { Graph, type Value } from '../../src/ort/graph.js';
import type { NodeDef } from '../../src/ort/proto.js';
import { Runtime } from '../../src/ort/session.js';
import { checkGradients, f64, rng, type GradCase, type InputSpec } from './autodiff-harness.js';
import { blockConfig } from '../fixtures/block-config.js';

const rt = new Runtime({ device: 'cpu', threads: 1 });
afterAll(() => rt.close());

// hidden 16, 2 query heads sharing 1 kv head (GQA), head dim 8, MLP 32, batch 2, seq 5
const [H, NH, NKV, HD, I, B, T] = [16, 2, 1, 8, 32, 2, 5];
const WEIGHTS: Record<string, readonly number[]> = {
  wq: [NH * HD, H], wk: [NKV * HD, H], wv: [NKV * HD, H], wo: [H, NH * HD], wg: [I, H], wu: [I, H], wd: [H, I],
};

function ropeData(): { cos: number[]; sin: number[] } {
  const cos: number[] = [];
  const sin: number[] = [];
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < HD; i++) {
      const angle = t / 10000 ** ((2 * (i % (HD / 2))) / HD);
      cos.push(Math.cos(angle));
      sin.push(Math.sin(angle));
    }
  }
  return { cos, sin };
}

/** a Llama decoder block from basic ops with loss = mean((block(x) − target)²) */
function llamaBlockLoss(g: Graph, v: Record<string, Value>): Value {
  const k = (x: number): Value => f64(g, x);
  const linear = (x: Value, w: Value): Value => g.matmul(x, g.transpose(w, [1, 0]));
  const rms = (x: Value, w: Value): Value =>
    g.mul(g.div(x, g.op('Sqrt', [g.add(g.reduceMean(g.op('Pow', [x, k(2)]), [-1]), k(1e-5))])), w);
  const heads = (y: Value, n: number): Value => g.transpose(g.reshape(y, [0, 0, n, HD]), [0, 2, 1, 3]);
  const half = (x: Value, s: number, e: number): Value => g.op('Slice', [x, g.ints([s]), g.ints([e]), g.ints([-1])]);
  const rope = (y: Value): Value =>
    g.add(g.mul(y, v.cos!), g.mul(g.op('Concat', [g.op('Neg', [half(y, HD / 2, HD)]), half(y, 0, HD / 2)], { axis: -1 }), v.sin!));
  const repeatKv = (y: Value): Value =>
    g.reshape(g.op('Expand', [g.op('Unsqueeze', [y, g.ints([2])]), g.ints([1, 1, NH / NKV, 1, 1])]), [0, NH, -1, HD]);

  const xin = rms(v.x!, v.norm1!);
  const q = rope(heads(linear(xin, v.wq!), NH));
  const key = repeatKv(rope(heads(linear(xin, v.wk!), NKV)));
  const val = repeatKv(heads(linear(xin, v.wv!), NKV));
  const scores = g.mul(g.matmul(q, g.transpose(key, [0, 1, 3, 2])), k(1 / Math.sqrt(HD)));
  const probs = g.op('Softmax', [g.op('Where', [v.causal!, scores, k(-1e9)], {}, { dtype: 'float64' })], { axis: -1 });
  const ctx = g.reshape(g.transpose(g.matmul(probs, val), [0, 2, 1, 3]), [0, 0, NH * HD]);
  const h = g.add(v.x!, linear(ctx, v.wo!));
  const m = rms(h, v.norm2!);
  const gate = linear(m, v.wg!);
  // silu(gate)·up as (sigmoid(gate)·up)·gate: onnxruntime fuses a literal x·sigmoid(x) into QuickGelu, which
  // has no float64 kernel
  const gated = g.mul(g.mul(g.op('Sigmoid', [gate]), linear(m, v.wu!)), gate);
  const out = g.add(h, linear(gated, v.wd!));
  return g.op('ReduceMean', [g.op('Pow', [g.sub(out, v.target!), k(2)])], { keepdims: 0 });
}

function blockInputs(): Record<string, InputSpec> {
  const { cos, sin } = ropeData();
  const causal = Array.from({ length: T * T }, (_, i) => (i % T <= Math.floor(i / T) ? 1 : 0));
  const inputs: Record<string, InputSpec> = {
    x: { shape: ['batch', 'seq', H], dims: [B, T, H] },
    target: { shape: ['batch', 'seq', H], dims: [B, T, H], wrt: false },
    cos: { shape: ['seq', HD], dims: [T, HD], data: cos, wrt: false },
    sin: { shape: ['seq', HD], dims: [T, HD], data: sin, wrt: false },
    causal: { shape: ['seq', 'seq'], dims: [T, T], data: causal, dtype: 'bool', wrt: false },
    norm1: { shape: [H], range: [0.5, 1.5] },
    norm2: { shape: [H], range: [0.5, 1.5] },
  };
  for (const [name, shape] of Object.entries(WEIGHTS)) inputs[name] = { shape, range: [-0.4, 0.4] };
  return inputs;
}

const countOps = (nodes: readonly NodeDef[]): Map<string, number> => {
  const m = new Map<string, number>();
  for (const n of nodes) m.set(n.opType, (m.get(n.opType) ?? 0) + 1);
  return m;
};

describe('gradients of a Llama decoder block', () => {
  const block: GradCase = { inputs: blockInputs(), build: llamaBlockLoss };

  test('gradients w.r.t. the 7 projections, both norm weights and the input agree with finite differences', async () => {
    const check = await checkGradients(rt, block, { coords: 8, unitSeed: true, h: 1e-5, seed: 3 });
    expect(Object.keys(check.relErr).sort()).toEqual(['norm1', 'norm2', 'wd', 'wg', 'wk', 'wo', 'wq', 'wu', 'wv', 'x']);
    for (const [name, err] of Object.entries(check.relErr)) expect(err, name).toBeLessThan(1e-3);
    for (const [name, a] of Object.entries(check.analytic)) expect(a.some((v) => v !== 0), name).toBe(true);
  });

  test('the backward pass reuses forward values instead of recomputing them', () => {
    const g = new Graph('block');
    const v: Record<string, Value> = {};
    for (const [name, spec] of Object.entries(block.inputs)) v[name] = g.input(name, spec.dtype ?? 'float64', spec.shape);
    const loss = llamaBlockLoss(g, v);
    const forward = countOps(g.nodes);
    const before = g.nodes.length;
    gradients(g, loss, Object.keys(WEIGHTS).map((k) => v[k]!));
    const backward = countOps(g.nodes.slice(before));
    for (const op of ['Softmax', 'Sigmoid', 'Sqrt', 'Exp']) expect(backward.get(op) ?? 0, op).toBe(0);
    // each projection's weight gradient is one Gemm over all rows, never a per-batch product
    expect(backward.get('Gemm')).toBe(Object.keys(WEIGHTS).length);
    expect((backward.get('MatMul') ?? 0) + (backward.get('Gemm') ?? 0)).toBeLessThanOrEqual(2 * (forward.get('MatMul') ?? 0));
  });
});

describe('gradients of the project decoder graph', () => {
  test('float32 gradients of the GQA decoder layer match float64 finite differences', async () => {
    const { LLAMA_FAMILY } = await import('../../src/model/arch.js');
    const { decoderLayer, layerWeightInputs } = await import('../../src/graphs/decoder-graph.js');
    const { ropeTables } = await import('../../src/graphs/rope.js');
    const cfg = blockConfig(H, NH, NKV, HD, I);
    const { linears, norms } = LLAMA_FAMILY.layer(cfg, 0);
    const { cos, sin } = ropeTables(cfg, { theta: cfg.ropeTheta, scaling: null }, Array.from({ length: T }, (_, t) => t));
    const r = rng(11);
    const rand = (n: number, lo: number, hi: number): number[] => Array.from({ length: n }, () => lo + (hi - lo) * r());

    const build = (dtype: 'float32' | 'float64'): { g: Graph; names: string[] } => {
      const g = new Graph(`layer-${dtype}`);
      const x = g.input('x', 'float32', ['batch', 'seq', H]);
      const target = g.input('target', 'float32', ['batch', 'seq', H]);
      const weights = layerWeightInputs(g, norms, linears);
      const ins = { x, cos: g.input('cos', 'float32', ['seq', HD]), sin: g.input('sin', 'float32', ['seq', HD]), mask: g.input('mask', 'float32', ['seq', 'seq']), weights };
      const { out } = decoderLayer(g, cfg, linears, ins);
      const diff = g.sub(out, target);
      const loss = g.op('ReduceMean', [g.mul(diff, diff)], { keepdims: 0 });
      if (dtype === 'float64') promoteToFloat64(g);
      const names = Object.keys(weights);
      const grads = gradients(g, { name: loss.name, dtype }, names.map((n) => ({ name: n, dtype })));
      g.outputs.push({ name: loss.name, dtype, shape: [] });
      grads.forEach((v, i) => g.output(v, `grad:${names[i]}`));
      return { g, names };
    };
    const feeds32: Record<string, { dims: number[]; data: number[] }> = {
      x: { dims: [B, T, H], data: rand(B * T * H, -1, 1) },
      target: { dims: [B, T, H], data: rand(B * T * H, -1, 1) },
      cos: { dims: [T, HD], data: [...cos.data] },
      sin: { dims: [T, HD], data: [...sin.data] },
      mask: { dims: [T, T], data: Array.from({ length: T * T }, (_, i) => (i % T <= Math.floor(i / T) ? 0 : -1e9)) },
    };
    for (const l of linears) feeds32[`${l.local}.weight`] = { dims: [l.outFeatures, l.inFeatures], data: rand(l.outFeatures * l.inFeatures, -0.4, 0.4) };
    for (const n of ['input_layernorm.weight', 'post_attention_layernorm.weight']) feeds32[n] = { dims: [H], data: rand(H, 0.5, 1.5) };
    const feeds = (dtype: 'float32' | 'float64', patch?: [string, number, number]) => {
      const out: Record<string, { dtype: 'float32' | 'float64'; dims: number[]; data: Float32Array | Float64Array }> = {};
      for (const [k, t] of Object.entries(feeds32)) {
        const data = dtype === 'float32' ? Float32Array.from(t.data) : Float64Array.from(Float32Array.from(t.data));
        if (patch && patch[0] === k) data[patch[1]] = data[patch[1]]! + patch[2];
        out[k] = { dtype, dims: t.dims, data };
      }
      return out;
    };

    const l32 = build('float32');
    const l64 = build('float64');
    const [k32, k64] = [await rt.kernel('layer32', () => l32.g), await rt.kernel('layer64', () => l64.g)];
    const [o32, o64] = [await k32.run(feeds('float32')), await k64.run(feeds('float64'))];
    const lossName = l64.g.outputs.find((o) => o.name === "loss" || o.shape?.length === 0)!.name;
    const h = 1e-5;
    for (const name of l64.names) {
      const g32 = o32[`grad:${name}`]!.data as Float32Array;
      const g64 = o64[`grad:${name}`]!.data as Float64Array;
      let worst = 0;
      let scale = 0;
      for (let c = 0; c < 4; c++) {
        const i = Math.floor(r() * g64.length);
        const lp = (await k64.run(feeds('float64', [name, i, h]), [lossName]))[lossName]!.data[0] as number;
        const lm = (await k64.run(feeds('float64', [name, i, -h]), [lossName]))[lossName]!.data[0] as number;
        const fd = (lp - lm) / (2 * h);
        worst = Math.max(worst, Math.abs(g64[i]! - fd));
        scale = Math.max(scale, Math.abs(fd));
      }
      expect(worst / scale, `${name} float64`).toBeLessThan(1e-3);
      const maxAbs = Math.max(...g64.map(Math.abs));
      const drift = Math.max(...g32.map((v, i) => Math.abs(v - g64[i]!)));
      expect(drift / maxAbs, `${name} float32 vs float64`).toBeLessThan(1e-3);
    }
  });
});

/** rewrite a float32 graph to float64 in place (inputs, initializers, Cast targets, Sigmoid) */
function promoteToFloat64(g: Graph): void {
  g.inputs.forEach((v, i) => (g.inputs[i] = v.dtype === 'float32' ? { ...v, dtype: 'float64' } : v));
  g.initializers.forEach((t, i) => {
    if (t.dtype !== 'float32' || !t.raw) return;
    const raw = new Uint8Array(Float64Array.from(new Float32Array(t.raw.slice().buffer)).buffer);
    g.initializers[i] = { ...t, dtype: 'float64', raw };
  });
  const one = f64(g, 1);
  const nodes = g.nodes.splice(0);
  const node = (opType: string, inputs: string[], output: string): NodeDef => ({ opType, domain: '', inputs, outputs: [output], attrs: {}, name: `${output}_n` });
  for (const n of nodes) {
    const to = n.attrs.to;
    if (n.opType === 'Cast' && to?.kind === 'int' && to.value === 1) {
      g.nodes.push({ ...n, attrs: { ...n.attrs, to: { kind: 'int', value: 11 } } });
    } else if (n.opType === 'Sigmoid') {
      // x·sigmoid(x) would be fused into QuickGelu, which has no float64 kernel: spell sigmoid as 1/(1+e^−x)
      const [x, y] = [n.inputs[0]!, n.outputs[0]!];
      g.nodes.push(node('Neg', [x], `${y}_neg`), node('Exp', [`${y}_neg`], `${y}_exp`), node('Add', [one.name, `${y}_exp`], `${y}_den`));
      g.nodes.push(node('Reciprocal', [`${y}_den`], y));
    } else g.nodes.push(n);
  }
}
