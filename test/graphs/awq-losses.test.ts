// AWQ's batched onnxruntime pieces against plain references: candidate weights against qparams.ts, and each
// parent's batched loss against running the layer once per candidate with the candidate's weights swapped in.

import { afterAll, describe, expect, test } from 'vitest';
import { awqGrid, awqSearch } from '../../src/algo/awq.js';
import { fakeQuantizeActivationsPerToken } from '../../src/algo/fake-quant.js';
import type { ActQuant } from '../../src/quant/module-quant.js';
import { computeQParams, fakeQuantizeWeight, weightMinMax } from '../../src/quant/qparams.js';
import { presetScheme, resolveQuantArgs, type QuantArgs } from '../../src/quant/scheme.js';
import type { InputSite, LinearSpec } from '../../src/model/arch.js';
import { exampleSource } from '../../src/model/example-dir.js';
import { exampleModelConfig } from '../../src/model/example-model.js';
import { exampleTokenizer } from '../../src/model/example-tokenizer.js';
import { runDecoderLayer, type LayerTap } from '../../src/graphs/layer-runner.js';
import { positionInputs } from '../../src/graphs/rope.js';
import { fusedPositionInputs } from '../../src/graphs/fused-layer.js';
import { candidateInput, candidateWeights, gramLossKernel, lossFeeds, parentLossKernel, type ParentModule } from '../../src/graphs/awq-kernel.js';
import { Runtime } from '../../src/ort/session.js';
import { tensor, type Tensor } from '../../src/tensor.js';
import { random } from '../fixtures/random.js';

const rt = new Runtime({ device: 'cpu', threads: 2 });
afterAll(() => rt.close());

/** candidate k of a [cols, K, rows] block as a [rows, cols] weight */
function candidate(block: Float32Array, rows: number, cols: number, K: number, k: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let c = 0; c < cols; c++) for (let r = 0; r < rows; r++) out[r * cols + c] = block[(c * K + k) * rows + r] as number;
  return out;
}

/** x [M, in] · Wᵀ, W [out, in] */
function matmulT(x: Float32Array, w: Float32Array, inF: number, outF: number): Float32Array {
  const M = x.length / inF;
  const y = new Float32Array(M * outF);
  for (let m = 0; m < M; m++) {
    for (let o = 0; o < outF; o++) {
      let acc = 0;
      for (let i = 0; i < inF; i++) acc += (x[m * inF + i] as number) * (w[o * inF + i] as number);
      y[m * outF + o] = acc;
    }
  }
  return y;
}

const sse = (a: Float32Array, b: Float32Array): number => a.reduce((s, v, i) => s + (v - (b[i] as number)) ** 2, 0);

describe('candidateWeights', () => {
  const cases: { name: string; cols: number; args: QuantArgs }[] = [
    { name: 'int4 asym, group 32 over 40 columns (partial last group)', cols: 40, args: resolveQuantArgs({ num_bits: 4, symmetric: false, group_size: 32 }) },
    { name: 'int4 sym, group 32 over 64 columns', cols: 64, args: resolveQuantArgs({ num_bits: 4, symmetric: true, group_size: 32 }) },
    { name: 'int8 sym, channel', cols: 40, args: resolveQuantArgs({ num_bits: 8, symmetric: true, group_size: -1 }) },
    { name: 'int4 asym, tensor', cols: 40, args: resolveQuantArgs({ num_bits: 4, symmetric: false }) },
  ];
  for (const c of cases) {
    test(`equals Q(W·s)/s from qparams.ts for every candidate: ${c.name}`, async () => {
      const [rows, cols, K] = [5, c.cols, 3];
      const w = random(rows * cols, 7, 2);
      const scales = Float32Array.from(random(K * cols, 11), (v) => 1 + 0.9 * v);
      const block = await candidateWeights(rt, w, rows, cols, scales, K, c.args);
      for (let k = 0; k < K; k++) {
        const s = scales.subarray(k * cols, (k + 1) * cols);
        const ws = Float32Array.from(w, (v, i) => v * (s[i % cols] as number));
        const { min, max } = weightMinMax(ws, rows, cols, c.args);
        const fq = fakeQuantizeWeight(ws, rows, cols, computeQParams(min, max, c.args), c.args);
        const want = Float32Array.from(fq, (v, i) => v / (s[i % cols] as number));
        // + 0 folds -0 into +0: the graph may drop the sign of a zero that rounds from a negative value
        expect(Array.from(candidate(block, rows, cols, K, k), (v) => v + 0)).toEqual(Array.from(want, (v) => v + 0));
      }
    });
  }
});

describe('parentLossKernel', () => {
  const { vocabSize } = exampleTokenizer(512);
  const cfg = exampleModelConfig('tiny', vocabSize);
  const layerSpec = exampleSource(cfg, 0).arch.layer(cfg, 0);
  const linears = layerSpec.linears;
  const args = presetScheme('W4A16_ASYM', ['Linear']).weights as QuantArgs;
  const [B, T, K] = [2, 16, 3];
  const x = tensor('float32', [B, T, cfg.hiddenSize], random(B * T * cfg.hiddenSize, 3, 1.5));
  const spec = (local: string): LinearSpec => linears.find((l) => l.local === local)!;

  async function site(weights: Record<string, Tensor>, s: InputSite, actQuant: ActQuant): Promise<Float32Array> {
    const tap: LayerTap = { key: `test.${s}`, build: (_g, v) => ({ site: v.sites[s]! }) };
    return (await runDecoderLayer(rt, cfg, layerSpec, weights, x, { tap, skipOut: true, actQuant }))['site']!.data as Float32Array;
  }

  /** batched sse from the kernel, and the reference from one layer run per candidate */
  async function compare(parent: ParentModule, inputSite: InputSite, measured: LinearSpec, actQuant: ActQuant = new Map()): Promise<void> {
    const weights: Record<string, Tensor<'float32'>> = await exampleSource(cfg, 0).layer(0);
    const cols = spec(parent.balance[0]!).inFeatures;
    const scales = Float32Array.from(random(K * cols, 5), (v) => 1 + 0.8 * v);
    const feeds: Record<string, Tensor> = { ...weights, ...positionInputs(cfg, layerSpec.attention, T), ...fusedPositionInputs(cfg, x.dims[0] as number, T) };
    const blocks = new Map<string, Float32Array>();
    for (const b of parent.balance) {
      const l = spec(b);
      const block = await candidateWeights(rt, weights[`${b}.weight`]!.data, l.outFeatures, l.inFeatures, scales, K, args);
      blocks.set(b, block);
      feeds[candidateInput(b)] = tensor('float32', [l.inFeatures, K, l.outFeatures], block);
    }
    const input = parent.kind === 'self_attn' ? x : tensor('float32', [B * T, cols], await site(weights, inputSite, actQuant));
    const kernel = await parentLossKernel(rt, cfg, layerSpec, parent, actQuant);
    const got = (await kernel.run(lossFeeds(kernel, { ...feeds, x: input })))['sse']!.data as Float32Array;

    const wOut = weights[`${measured.local}.weight`]!.data;
    const measuredSite = parent.kind === 'linear' ? null : measured.site;
    const bits = actQuant.get(measured.local)?.num_bits;
    const inputOf = async (w: Record<string, Tensor>): Promise<Float32Array> => {
      const a = measuredSite ? await site(w, measuredSite, actQuant) : (input.data as Float32Array);
      return bits === undefined ? a : fakeQuantizeActivationsPerToken(a, a.length / measured.inFeatures, measured.inFeatures, bits);
    };
    const yFp = matmulT(await inputOf(weights), wOut, measured.inFeatures, measured.outFeatures);
    for (let k = 0; k < K; k++) {
      const swapped: Record<string, Tensor> = { ...weights };
      for (const b of parent.balance) swapped[`${b}.weight`] = tensor('float32', [spec(b).outFeatures, spec(b).inFeatures], candidate(blocks.get(b)!, spec(b).outFeatures, spec(b).inFeatures, K, k));
      const w = parent.kind === 'linear' ? swapped[`${measured.local}.weight`]!.data as Float32Array : wOut;
      const want = sse(matmulT(await inputOf(swapped), w, measured.inFeatures, measured.outFeatures), yFp);
      expect(Math.abs((got[k] as number) - want) / want).toBeLessThan(1e-3);
    }
  }

  test('self_attn: the o_proj output error of each candidate for q/k/v (grouped-query attention)', async () => {
    await compare({ kind: 'self_attn', balance: ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'] }, 'attn_in', spec('self_attn.o_proj'));
  });

  test('self_attn: only the searched projections take candidates', async () => {
    await compare({ kind: 'self_attn', balance: ['self_attn.k_proj'] }, 'attn_in', spec('self_attn.o_proj'));
  });

  test('mlp: the down_proj output error of each candidate for gate/up', async () => {
    await compare({ kind: 'mlp', balance: ['mlp.gate_proj', 'mlp.up_proj'] }, 'mlp_in', spec('mlp.down_proj'));
  });

  test('inputs of Linears an earlier stage quantized with W8A8 are fake-quantized per token inside the graphs', async () => {
    const token8 = presetScheme('W8A8', ['Linear']).input_activations!;
    const w8a8 = new Map([['self_attn.o_proj', token8], ['mlp.down_proj', token8]]);
    await compare({ kind: 'self_attn', balance: ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'] }, 'attn_in', spec('self_attn.o_proj'), w8a8);
    await compare({ kind: 'mlp', balance: ['mlp.gate_proj', 'mlp.up_proj'] }, 'mlp_in', spec('mlp.down_proj'), w8a8);
  });

  test('linear: the module output error of each candidate', async () => {
    await compare({ kind: 'linear', balance: ['mlp.down_proj'] }, 'down_in', spec('mlp.down_proj'));
  });
});

describe('gramLossKernel', () => {
  test('Σ d·(XᵀX)·dᵀ over rows equals the Linear output error of each candidate (bias and all)', async () => {
    const [M, inF, outF, K] = [300, 48, 20, 5];
    const layer: LinearSpec = { local: 'mlp.down_proj', site: 'down_in', role: 'down', outFeatures: outF, inFeatures: inF, bias: true };
    const cfg = exampleModelConfig('tiny', exampleTokenizer(512).vocabSize);
    const x = Float32Array.from(random(M * inF, 3), (v, i) => (i % inF === 7 ? 30 * v : v));
    const w = random(outF * inF, 5, 0.3);
    const scales = Float32Array.from(random(K * inF, 9), (v) => 1 + 0.8 * v);
    const args = resolveQuantArgs({ num_bits: 4, symmetric: false, group_size: 32 });
    const cand = await candidateWeights(rt, w, outF, inF, scales, K, args);
    const direct = await parentLossKernel(rt, cfg, { linears: [layer], norms: [], attention: { rope: { theta: cfg.ropeTheta, scaling: cfg.ropeScaling }, window: null } }, { kind: 'linear', balance: [layer.local] }, new Map());
    const feeds = { x: tensor('float32', [M, inF], x), 'mlp.down_proj.weight': tensor('float32', [outF, inF], w), 'mlp.down_proj.bias': tensor('float32', [outF], random(outF, 2)), [candidateInput(layer.local)]: tensor('float32', [inF, K, outF], cand) };
    const want = (await direct.run(lossFeeds(direct, feeds)))['sse']!.data as Float32Array;
    const gram = new Float64Array(inF * inF);
    for (let m = 0; m < M; m++) for (let i = 0; i < inF; i++) for (let j = 0; j < inF; j++) gram[i * inF + j] = (gram[i * inF + j] as number) + (x[m * inF + i] as number) * (x[m * inF + j] as number);
    const kernel = await gramLossKernel(rt, outF, inF);
    const got = (await kernel.run({ w: tensor('float32', [outF, inF], w), candidates: tensor('float32', [inF, K, outF], cand), gram: tensor('float32', [inF, inF], Float32Array.from(gram)) }))['sse']!.data as Float32Array;
    for (let k = 0; k < K; k++) expect(Math.abs((got[k] as number) - (want[k] as number)) / (want[k] as number)).toBeLessThan(1e-4);
  });
});

describe('chunked candidates (what bounds the search memory)', () => {
  const [rows, cols, K] = [64, 160, 9];
  const w = random(rows * cols, 31, 0.4);
  const scales = Float32Array.from(random(K * cols, 33), (v) => 1 + 0.9 * v);
  const args = resolveQuantArgs({ num_bits: 4, symmetric: false, group_size: 128 });

  test('candidateWeights written into a given buffer equal the ones it allocates', async () => {
    const want = await candidateWeights(rt, w, rows, cols, scales, K, args);
    const buffer = new Float32Array((K + 2) * rows * cols).fill(Number.NaN);
    const got = await candidateWeights(rt, w, rows, cols, scales, K, args, buffer);
    expect(got.buffer).toBe(buffer.buffer);
    expect(Array.from(got)).toEqual(Array.from(want));
    expect(Number.isNaN(buffer[K * rows * cols] as number)).toBe(true);
  });

  test('the Gram losses of chunks of two or more candidates equal the losses of all at once, bit for bit', async () => {
    const x = random(200 * cols, 35);
    const gram = new Float32Array(cols * cols);
    for (let m = 0; m < 200; m++) for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) gram[i * cols + j] = (gram[i * cols + j] as number) + (x[m * cols + i] as number) * (x[m * cols + j] as number);
    const kernel = await gramLossKernel(rt, rows, cols);
    const losses = async (k0: number, k: number): Promise<number[]> => {
      const cand = await candidateWeights(rt, w, rows, cols, scales.subarray(k0 * cols, (k0 + k) * cols), k, args);
      const feeds = { w: tensor('float32', [rows, cols], w), candidates: tensor('float32', [cols, k, rows], cand), gram: tensor('float32', [cols, cols], gram) };
      return Array.from((await kernel.run(feeds))['sse']!.data as Float32Array);
    };
    const all = await losses(0, K);
    for (const pieces of [[[0, 2], [2, 2], [4, 2], [6, 3]], [[0, 4], [4, 5]]]) {
      const got: number[] = [];
      for (const [k0, k] of pieces) got.push(...(await losses(k0!, k!)));
      expect(got).toEqual(all);
    }
  });
});

describe('AWQ search with onnxruntime losses', () => {
  const [M, inF, outF] = [256, 64, 32];
  const layer: LinearSpec = { local: 'mlp.down_proj', site: 'down_in', role: 'down', outFeatures: outF, inFeatures: inF, bias: false };
  const cfg = exampleModelConfig('tiny', exampleTokenizer(512).vocabSize);
  const args = resolveQuantArgs({ num_bits: 4, symmetric: false, group_size: 32 });
  const w = random(outF * inF, 21, 0.2);

  async function search(x: Float32Array) {
    const xMean = new Float32Array(inF);
    for (let i = 0; i < x.length; i++) xMean[i % inF] = (xMean[i % inF] as number) + Math.abs(x[i] as number) / M;
    const kernel = await parentLossKernel(rt, cfg, { linears: [layer], norms: [], attention: { rope: { theta: cfg.ropeTheta, scaling: cfg.ropeScaling }, window: null } }, { kind: 'linear', balance: [layer.local] }, new Map());
    return awqSearch({
      xMean,
      candidates: awqGrid(false, 20),
      losses: async (scales, K) => {
        const cand = await candidateWeights(rt, w, outF, inF, scales, K, args);
        const feeds = { x: tensor('float32', [M, inF], x), 'mlp.down_proj.weight': tensor('float32', [outF, inF], w), [candidateInput(layer.local)]: tensor('float32', [inF, K, outF], cand) };
        return Float64Array.from((await kernel.run(lossFeeds(kernel, feeds)))['sse']!.data as Float32Array);
      },
    });
  }

  test('picks ratio 0 (no scaling) when every channel has the same magnitude', async () => {
    const x = Float32Array.from(random(M * inF, 4), (v) => (v < 0 ? -1 : 1));
    const r = await search(x);
    expect(r.best).toEqual({ ratio: 0, duo: false });
    expect(r.loss).toBe(r.identityLoss);
  });

  test('scales up an outlier channel and lowers the loss below plain rounding', async () => {
    const x = Float32Array.from(random(M * inF, 4), (v, i) => (i % inF === 5 || i % inF === 40 ? 40 * v : v));
    const r = await search(x);
    expect(r.best.ratio).toBeGreaterThan(0);
    expect(r.loss).toBeLessThan(r.identityLoss!);
    expect(r.scales[5]).toBeGreaterThan(r.scales[6]!);
  });
});
