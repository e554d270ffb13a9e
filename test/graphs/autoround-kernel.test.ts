import { afterAll, describe, expect, test } from 'vitest';
import { addScaledGrads, initialParams, quantizeLearned, widenedRange } from '../../src/algo/autoround.js';
import { weightMinMax } from '../../src/quant/qparams.js';
import { quantizeWeightRtn } from '../../src/algo/fake-quant.js';
import { resolveQuantArgs, type QuantArgs } from '../../src/quant/scheme.js';
import { LLAMA_FAMILY } from '../../src/model/arch.js';
import { positionInputs } from '../../src/graphs/rope.js';
import { quantLayout, toGroups, type TargetParams } from '../../src/algo/autoround-layout.js';
import {
  autoroundBlockGraph,
  autoroundBlockKernel,
  gradientBuffers,
  releaseAutoRoundKernels,
  runAutoRoundBlock,
  targetInputNames,
  type AutoRoundBlockSpec,
  type BlockConstants,
} from '../../src/graphs/autoround-kernel.js';
import type { Graph } from '../../src/ort/graph.js';
import type { NodeDef } from '../../src/ort/proto.js';
import { Runtime } from '../../src/ort/session.js';
import { tensor, type Tensor } from '../../src/tensor.js';
import { rng } from '../ort/autodiff-harness.js';
import { blockConfig } from '../fixtures/block-config.js';

const rt = new Runtime({ device: 'cpu', threads: 1 });
afterAll(() => rt.close());

// hidden 16, 2 query heads on 1 kv head, head dim 8, MLP 24; batch 2, seq 5
const [H, NH, NKV, HD, I, B, T] = [16, 2, 1, 8, 24, 2, 5];
const cfg = blockConfig(H, NH, NKV, HD, I);
const layerSpec = LLAMA_FAMILY.layer(cfg, 0);
const linears = layerSpec.linears;

// every layout at once: groups with a padded last group (16 = 12 + 4), full groups, channel, tensor; sym and asym
const ARGS: Record<string, QuantArgs> = {
  'self_attn.q_proj': resolveQuantArgs({ num_bits: 4, symmetric: true, group_size: 12 }),
  'self_attn.k_proj': resolveQuantArgs({ num_bits: 4, symmetric: false, group_size: 12 }),
  'self_attn.v_proj': resolveQuantArgs({ num_bits: 4, symmetric: true, group_size: -1 }),
  'self_attn.o_proj': resolveQuantArgs({ num_bits: 8, symmetric: false, group_size: -1 }),
  'mlp.gate_proj': resolveQuantArgs({ num_bits: 4, symmetric: false, strategy: 'tensor' }),
  'mlp.up_proj': resolveQuantArgs({ num_bits: 3, symmetric: true, group_size: 8 }),
  'mlp.down_proj': resolveQuantArgs({ num_bits: 4, symmetric: false, group_size: 12 }),
};

const r = rng(5);
const rand = (n: number, lo: number, hi: number): Float32Array => Float32Array.from({ length: n }, () => lo + (hi - lo) * r());
const f32 = (dims: number[], data: Float32Array): Tensor<'float32'> => tensor('float32', dims, data);

const layer: Record<string, Tensor<'float32'>> = {
  'input_layernorm.weight': f32([H], rand(H, 0.5, 1.5)),
  'post_attention_layernorm.weight': f32([H], rand(H, 0.5, 1.5)),
};
for (const l of linears) layer[`${l.local}.weight`] = f32([l.outFeatures, l.inFeatures], rand(l.outFeatures * l.inFeatures, -0.4, 0.4));

function setup(minmax: boolean, rounding: boolean, weights = false) {
  const targets = linears.map((l) => {
    const a = ARGS[l.local]!;
    return { local: l.local, layout: quantLayout(l.outFeatures, l.inFeatures, a.strategy, a.group_size), bits: a.num_bits, symmetric: a.symmetric };
  });
  const spec: AutoRoundBlockSpec = { cfg, layer: layerSpec, targets, actQuant: new Map(), minmax, rounding, weights };
  const constants: BlockConstants = { tensors: layer, targets: {} };
  const ranges: Record<string, ReturnType<typeof weightMinMax>> = {};
  for (const t of targets) {
    const w = layer[`${t.local}.weight`]!.data;
    ranges[t.local] = weightMinMax(w, t.layout.rows, t.layout.cols, ARGS[t.local]!);
    constants.targets[t.local] = { w: toGroups(w, t.layout), ...widenedRange(ranges[t.local]!) };
  }
  return { spec, constants, ranges };
}

function randomParams(spec: AutoRoundBlockSpec): Record<string, TargetParams> {
  const out: Record<string, TargetParams> = {};
  for (const t of spec.targets) {
    const { R, G, S } = t.layout;
    out[t.local] = { v: rand(R * G * S, -0.5, 0.5), minScale: rand(R * G, 0.7, 1), maxScale: rand(R * G, 0.7, 1) };
  }
  return out;
}

const x = f32([B, T, H], rand(B * T * H, -1, 1));
const y = f32([B, T, H], rand(B * T * H, -1, 1));

/** rewrite the float32 graph (gradients included) to float64 in place; sigmoid spelled 1/(1+e^−x) (fused QuickGelu has no double kernel) */
function promoteToFloat64(g: Graph): void {
  g.inputs.forEach((v, i) => (g.inputs[i] = v.dtype === 'float32' ? { ...v, dtype: 'float64' } : v));
  g.outputs.forEach((v, i) => (g.outputs[i] = v.dtype === 'float32' ? { ...v, dtype: 'float64' } : v));
  g.initializers.forEach((t, i) => {
    if (t.dtype !== 'float32' || !t.raw) return;
    g.initializers[i] = { ...t, dtype: 'float64', raw: new Uint8Array(Float64Array.from(new Float32Array(t.raw.slice().buffer)).buffer) };
  });
  const one = g.constant({ dtype: 'float64', dims: [], data: Float64Array.of(1) });
  const node = (opType: string, inputs: string[], output: string): NodeDef => ({ opType, domain: '', inputs, outputs: [output], attrs: {}, name: `${output}_n` });
  for (const n of g.nodes.splice(0)) {
    const value = n.attrs.value;
    if (n.opType === 'ConstantOfShape' && value?.kind === 'tensor' && value.value.dtype === 'float32' && value.value.raw) {
      const raw = new Uint8Array(Float64Array.from(new Float32Array(value.value.raw.slice().buffer)).buffer);
      g.nodes.push({ ...n, attrs: { ...n.attrs, value: { kind: 'tensor', value: { ...value.value, dtype: 'float64', raw } } } });
      continue;
    }
    const to = n.attrs.to;
    if (n.opType === 'Cast' && to?.kind === 'int' && to.value === 1) {
      g.nodes.push({ ...n, attrs: { ...n.attrs, to: { kind: 'int', value: 11 } } });
      continue;
    }
    if (n.opType !== 'Sigmoid') {
      g.nodes.push(n);
      continue;
    }
    const [i, o] = [n.inputs[0]!, n.outputs[0]!];
    g.nodes.push(node('Neg', [i], `${o}_neg`), node('Exp', [`${o}_neg`], `${o}_exp`), node('Add', [one.name, `${o}_exp`], `${o}_den`), node('Reciprocal', [`${o}_den`], o));
  }
}

function feeds64(spec: AutoRoundBlockSpec, constants: BlockConstants, params: Record<string, TargetParams>): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  const put = (name: string, dims: readonly number[], data: ArrayLike<number>): void => {
    out[name] = { dtype: 'float64', dims, data: Float64Array.from(data) };
  };
  put('x', x.dims, x.data);
  put('target', y.dims, y.data);
  for (const [k, t] of Object.entries(positionInputs(cfg, layerSpec.attention, T))) put(k, t.dims, t.data);
  for (const n of ['input_layernorm.weight', 'post_attention_layernorm.weight']) put(n, [H], layer[n]!.data);
  for (const t of spec.targets) {
    const { R, G, S } = t.layout;
    const n = targetInputNames(t.local);
    const c = constants.targets[t.local]!;
    const p = params[t.local]!;
    put(n.w, [R, G, S], c.w);
    put(n.min, [R, G], c.min);
    put(n.max, [R, G], c.max);
    put(n.v, [R, G, S], p.v);
    put(n.minScale, [R, G], p.minScale);
    put(n.maxScale, [R, G], p.maxScale);
  }
  return out;
}

describe('autoround block kernel', () => {
  test('without rounding, the block-loss gradients w.r.t. V and both factors match float64 finite differences', async () => {
    const { spec, constants } = setup(true, false);
    const g = autoroundBlockGraph(spec);
    promoteToFloat64(g);
    const k = await rt.kernel('autoround-test-f64', () => g);
    const params = randomParams(spec);
    const base = feeds64(spec, constants, params);
    const out = await k.run(base);
    const loss = async (name: string, i: number, h: number): Promise<number> => {
      const data = Float64Array.from(base[name]!.data as Float64Array);
      data[i] = data[i]! + h;
      return (await k.run({ ...base, [name]: { ...base[name]!, data } }, ['loss'])).loss!.data[0] as number;
    };
    const h = 1e-6;
    let checked = 0;
    for (const t of spec.targets) {
      const n = targetInputNames(t.local);
      for (const name of [n.v, n.minScale, n.maxScale]) {
        const grad = out[`grad:${name}`]!.data as Float64Array;
        const scale = Math.max(...grad.map(Math.abs));
        expect(scale, name).toBeGreaterThan(0);
        for (let c = 0; c < 3; c++) {
          // the coordinate with the largest gradient, then random ones
          const i = c === 0 ? grad.findIndex((v) => Math.abs(v) === scale) : Math.floor(r() * grad.length);
          const fd = ((await loss(name, i, h)) - (await loss(name, i, -h))) / (2 * h);
          expect(Math.abs(fd - grad[i]!) / scale, `${name}[${i}]`).toBeLessThan(1e-5);
          checked++;
        }
      }
    }
    expect(checked).toBe(7 * 3 * 3);
  });

  test('a kernel without min/max tuning returns gradients for V only', async () => {
    const { spec, constants } = setup(false, true);
    const k = await autoroundBlockKernel(rt, spec);
    const params = Object.fromEntries(spec.targets.map((t) => [t.local, initialParams(t.layout)]));
    const res = await runAutoRoundBlock(k, spec, constants, x, y, params);
    expect(Number.isFinite(res.loss)).toBe(true);
    for (const t of spec.targets) {
      expect(res.grads[t.local]!.v.length).toBe(t.layout.R * t.layout.G * t.layout.S);
      expect(res.grads[t.local]!.minScale).toBeUndefined();
      expect(res.grads[t.local]!.v.some((v) => v !== 0), t.local).toBe(true);
    }
  });

  test('the in-graph quantizer equals the JS final quantization bit for bit at random parameters', async () => {
    const { spec, constants, ranges } = setup(true, true, true);
    const k = await autoroundBlockKernel(rt, spec);
    const params = randomParams(spec);
    const res = await runAutoRoundBlock(k, spec, constants, x, y, params);
    for (const t of spec.targets) {
      const w = layer[`${t.local}.weight`]!.data;
      const js = quantizeLearned(w, t.layout, ranges[t.local]!, params[t.local]!, ARGS[t.local]!);
      const graph = res.qweights[t.local]!;
      expect(graph.length).toBe(js.dequantized.length);
      const mismatches = js.dequantized.filter((v, i) => v !== graph[i]).length;
      expect(mismatches, t.local).toBe(0);
    }
  });

  test('at V = 0 and factors 1 the in-graph weights are the round-to-nearest weights', async () => {
    const { spec, constants } = setup(true, true, true);
    const k = await autoroundBlockKernel(rt, spec);
    const params = Object.fromEntries(spec.targets.map((t) => [t.local, initialParams(t.layout)]));
    const res = await runAutoRoundBlock(k, spec, constants, x, y, params);
    for (const t of spec.targets) {
      const rtn = await quantizeWeightRtn(layer[`${t.local}.weight`]!.data, t.layout.rows, t.layout.cols, ARGS[t.local]!);
      const graph = res.qweights[t.local]!;
      expect(rtn.dequantized.filter((v, i) => v !== graph[i]).length, t.local).toBe(0);
    }
  });

  test('gradients written into buffers allocated once equal the returned ones, and are those buffers', async () => {
    const { spec, constants } = setup(true, true);
    const k = await autoroundBlockKernel(rt, spec);
    const params = randomParams(spec);
    const fresh = await runAutoRoundBlock(k, spec, constants, x, y, params);
    const buffers = gradientBuffers(spec);
    for (let run = 0; run < 2; run++) {
      const res = await runAutoRoundBlock(k, spec, constants, x, y, params, buffers);
      expect(res.loss).toBe(fresh.loss);
      for (const t of spec.targets) {
        for (const key of ['v', 'minScale', 'maxScale'] as const) {
          const got = res.grads[t.local]![key]!;
          expect(got, `${t.local}.${key}`).toBe(buffers[t.local]![key]);
          expect(Buffer.from(got.buffer).equals(Buffer.from(fresh.grads[t.local]![key]!.buffer)), `${t.local}.${key}`).toBe(true);
        }
      }
    }
  });

  test('the session of a small block keeps an arena and computes what a default session does, call after call; release drops it', async () => {
    const { spec, constants } = setup(true, true);
    const k = await autoroundBlockKernel(rt, spec);
    const plain = await rt.kernel('test.autoround.plain', () => autoroundBlockGraph(spec));
    const params = randomParams(spec);
    for (let run = 0; run < 3; run++) {
      const [got, want] = [await runAutoRoundBlock(k, spec, constants, x, y, params), await runAutoRoundBlock(plain, spec, constants, x, y, params)];
      expect(got.loss).toBe(want.loss);
      for (const t of spec.targets) expect(Buffer.from(got.grads[t.local]!.v.buffer).equals(Buffer.from(want.grads[t.local]!.v.buffer)), t.local).toBe(true);
    }
    await releaseAutoRoundKernels(rt);
    expect(await autoroundBlockKernel(rt, spec)).not.toBe(k);
    expect(await rt.kernel('test.autoround.plain', () => autoroundBlockGraph(spec))).toBe(plain);
  });

  test('a batch run in two parts weighted by their share gives the whole batch loss and gradients', async () => {
    const { spec, constants } = setup(true, true);
    const k = await autoroundBlockKernel(rt, spec);
    const params = randomParams(spec);
    const whole = await runAutoRoundBlock(k, spec, constants, x, y, params);
    const half = (t: Tensor<'float32'>, i: number): Tensor<'float32'> => f32([1, T, H], t.data.slice(i * T * H, (i + 1) * T * H));
    const parts = [await runAutoRoundBlock(k, spec, constants, half(x, 0), half(y, 0), params), await runAutoRoundBlock(k, spec, constants, half(x, 1), half(y, 1), params)];
    let grads = {};
    for (const part of parts) grads = addScaledGrads(grads, part.grads, 0.5);
    expect((parts[0]!.loss + parts[1]!.loss) / 2).toBeCloseTo(whole.loss, 6);
    for (const t of spec.targets) {
      for (const key of ['v', 'minScale', 'maxScale'] as const) {
        const a = whole.grads[t.local]![key]!;
        const b = (grads as typeof whole.grads)[t.local]![key]!;
        const scale = Math.max(...a.map(Math.abs));
        expect(Math.max(...a.map((v, i) => Math.abs(v - b[i]!))) / scale, `${t.local}.${key}`).toBeLessThan(1e-4);
      }
    }
  });

  test('a missing layer tensor is reported by name', async () => {
    const { spec, constants } = setup(false, true);
    const k = await autoroundBlockKernel(rt, spec);
    const params = Object.fromEntries(spec.targets.map((t) => [t.local, initialParams(t.layout)]));
    const tensors = { ...constants.tensors };
    delete tensors['post_attention_layernorm.weight'];
    await expect(runAutoRoundBlock(k, spec, { ...constants, tensors }, x, y, params)).rejects.toThrow(/post_attention_layernorm\.weight/);
  });
});

describe('quantLayout', () => {
  test('groups pad the last group; a single partial group keeps the real width', () => {
    expect(quantLayout(4, 16, 'group', 12)).toEqual({ rows: 4, cols: 16, R: 4, G: 2, S: 12 });
    expect(quantLayout(4, 64, 'group', 128)).toEqual({ rows: 4, cols: 64, R: 4, G: 1, S: 64 });
    expect(quantLayout(4, 16, 'tensor', null)).toEqual({ rows: 4, cols: 16, R: 1, G: 1, S: 64 });
    expect(quantLayout(4, 16, 'channel', null)).toEqual({ rows: 4, cols: 16, R: 4, G: 1, S: 16 });
  });

  test('a strategy without a weight layout is refused with the allowed set', () => {
    expect(() => quantLayout(4, 16, 'token', null)).toThrow(/expected tensor, channel or group/);
    expect(() => quantLayout(4, 16, 'group', null)).toThrow(/positive group_size/);
  });

  test('toGroups zero-pads each row to whole groups', () => {
    const w = Float32Array.from({ length: 2 * 5 }, (_, i) => i + 1);
    expect([...toGroups(w, quantLayout(2, 5, 'group', 3))]).toEqual([1, 2, 3, 4, 5, 0, 6, 7, 8, 9, 10, 0]);
  });
});
