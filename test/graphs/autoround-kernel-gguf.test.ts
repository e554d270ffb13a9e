// The AutoRound block kernel with GGUF targets (Q4_0, Q4_1, Q8_0, Q5_0 on one decoder block whose widths are
// whole blocks of 32): the weights it trains with are, bit for bit, the JS blocks of algo/autoround-gguf.ts
// (what the layer state stores and the gguf output packs), and it differentiates the loss w.r.t. V and both
// min/max factors through the float16 block scales.

import { afterAll, describe, expect, test } from 'vitest';
import { quantizeLearnedGguf, type LearnedBlockType } from '../../src/algo/autoround-gguf.js';
import { quantLayout, toGroups, type TargetParams } from '../../src/algo/autoround-layout.js';
import { autoroundBlockKernel, runAutoRoundBlock, type AutoRoundBlockSpec, type BlockConstants } from '../../src/graphs/autoround-kernel.js';
import { LLAMA_FAMILY } from '../../src/model/arch.js';
import { Runtime } from '../../src/ort/session.js';
import { weightMinMax } from '../../src/quant/qparams.js';
import { tensor, type Tensor } from '../../src/tensor.js';
import { rng } from '../ort/autodiff-harness.js';
import { blockConfig } from '../fixtures/block-config.js';

const rt = new Runtime({ device: 'cpu', threads: 1 });
afterAll(() => rt.close());

// hidden 32, 2 query heads on 1 kv head, head dim 16, MLP 64; batch 2, seq 5
const [H, NH, NKV, HD, I, B, T] = [32, 2, 1, 16, 64, 2, 5];
const cfg = blockConfig(H, NH, NKV, HD, I);
const layerSpec = LLAMA_FAMILY.layer(cfg, 0);
const TYPES: Record<string, LearnedBlockType> = {
  'self_attn.q_proj': 'Q4_0', 'self_attn.k_proj': 'Q4_1', 'self_attn.v_proj': 'Q8_0', 'self_attn.o_proj': 'Q5_0',
  'mlp.gate_proj': 'Q4_1', 'mlp.up_proj': 'Q4_0', 'mlp.down_proj': 'Q8_0',
};

const r = rng(9);
const rand = (n: number, lo: number, hi: number): Float32Array => Float32Array.from({ length: n }, () => lo + (hi - lo) * r());
const f32 = (dims: number[], data: Float32Array): Tensor<'float32'> => tensor('float32', dims, data);
const layer: Record<string, Tensor<'float32'>> = {
  'input_layernorm.weight': f32([H], rand(H, 0.5, 1.5)),
  'post_attention_layernorm.weight': f32([H], rand(H, 0.5, 1.5)),
};
for (const l of layerSpec.linears) layer[`${l.local}.weight`] = f32([l.outFeatures, l.inFeatures], rand(l.outFeatures * l.inFeatures, -0.4, 0.4));

describe('autoround block kernel with GGUF targets', () => {
  test('trains on the JS blocks bit for bit and returns gradients for V and both factors', async () => {
    const targets = layerSpec.linears.map((l) => ({
      local: l.local, layout: quantLayout(l.outFeatures, l.inFeatures, 'group', 32), bits: 4, symmetric: true, gguf: TYPES[l.local]!,
    }));
    const spec: AutoRoundBlockSpec = { cfg, layer: layerSpec, targets, actQuant: new Map(), minmax: true, weights: true };
    const constants: BlockConstants = { tensors: layer, targets: {} };
    const params: Record<string, TargetParams> = {};
    const ranges: Record<string, ReturnType<typeof weightMinMax>> = {};
    for (const t of targets) {
      const w = layer[`${t.local}.weight`]!.data;
      ranges[t.local] = weightMinMax(w, t.layout.rows, t.layout.cols, { strategy: 'group', group_size: 32 } as never);
      constants.targets[t.local] = { w: toGroups(w, t.layout), ...ranges[t.local]! };
      const { R, G, S } = t.layout;
      params[t.local] = { v: rand(R * G * S, -0.5, 0.5), minScale: rand(R * G, 0.7, 1), maxScale: rand(R * G, 0.7, 1) };
    }
    const k = await autoroundBlockKernel(rt, spec);
    const res = await runAutoRoundBlock(k, spec, constants, f32([B, T, H], rand(B * T * H, -1, 1)), f32([B, T, H], rand(B * T * H, -1, 1)), params);
    expect(Number.isFinite(res.loss)).toBe(true);
    for (const t of targets) {
      const js = quantizeLearnedGguf(t.gguf, layer[`${t.local}.weight`]!.data, t.layout, ranges[t.local]!, params[t.local]!);
      const graph = res.qweights[t.local]!;
      expect(graph.length).toBe(js.dequantized.length);
      // equal values (=== treats −0 and 0 alike: a code 0 times a negative d)
      expect(js.dequantized.filter((v, i) => v !== graph[i]).length, t.local).toBe(0);
      const g = res.grads[t.local]!;
      for (const [name, a] of [['v', g.v], ['minScale', g.minScale], ['maxScale', g.maxScale]] as const) {
        expect(a, `${t.local} ${name}`).toBeDefined();
        expect(a!.every(Number.isFinite) && a!.some((v) => v !== 0), `${t.local} ${name}`).toBe(true);
      }
    }
  });
});
