// One decoder layer on onnxruntime against a plain TypeScript reference (float64 loops).

import { describe, expect, test } from 'vitest';
import { Runtime } from '../../src/ort/session.js';
import { parseModelConfig, type ModelConfig } from '../../src/model/config.js';
import { LLAMA_FAMILY } from '../../src/model/arch.js';
import { runDecoderLayer } from '../../src/graphs/layer-runner.js';
import { ropeTables } from '../../src/graphs/rope.js';
import { tensor, type Tensor } from '../../src/tensor.js';
import { seededRandom } from '../../src/random.js';

function randomWeights(cfg: ModelConfig, seed: number): Record<string, Tensor<'float32'>> {
  const rand = seededRandom(seed);
  const w: Record<string, Tensor<'float32'>> = {};
  const fill = (dims: number[], scale: number, offset = 0): Tensor<'float32'> =>
    tensor('float32', dims, Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => offset + scale * (rand() * 2 - 1)));
  w['input_layernorm.weight'] = fill([cfg.hiddenSize], 0.2, 1);
  w['post_attention_layernorm.weight'] = fill([cfg.hiddenSize], 0.2, 1);
  for (const l of LLAMA_FAMILY.layer(cfg, 0).linears) {
    w[`${l.local}.weight`] = fill([l.outFeatures, l.inFeatures], 1 / Math.sqrt(l.inFeatures));
    if (l.bias) w[`${l.local}.bias`] = fill([l.outFeatures], 0.1);
  }
  return w;
}

/** the reference: HF Llama semantics written as loops */
function referenceLayer(cfg: ModelConfig, w: Record<string, Tensor<'float32'>>, x: Float64Array, T: number): Float64Array {
  const H = cfg.hiddenSize;
  const { numHeads: nh, numKvHeads: nkv, headDim: hd } = cfg;
  const linear = (inp: Float64Array, name: string, rows: number): Float64Array => {
    const W = w[`${name}.weight`]!;
    const [out, inF] = W.dims as [number, number];
    const b = w[`${name}.bias`];
    const y = new Float64Array(rows * out);
    for (let r = 0; r < rows; r++) for (let o = 0; o < out; o++) {
      let s = b ? (b.data[o] as number) : 0;
      for (let i = 0; i < inF; i++) s += (inp[r * inF + i] as number) * (W.data[o * inF + i] as number);
      y[r * out + o] = s;
    }
    return y;
  };
  const norm = (inp: Float64Array, name: string): Float64Array => {
    const g = w[name]!.data;
    const y = new Float64Array(inp.length);
    for (let r = 0; r < T; r++) {
      let ms = 0;
      for (let i = 0; i < H; i++) ms += (inp[r * H + i] as number) ** 2;
      const inv = 1 / Math.sqrt(ms / H + cfg.rmsNormEps);
      for (let i = 0; i < H; i++) y[r * H + i] = (inp[r * H + i] as number) * inv * (g[i] as number);
    }
    return y;
  };
  const { cos, sin } = ropeTables(cfg, { theta: cfg.ropeTheta, scaling: cfg.ropeScaling }, Array.from({ length: T }, (_, i) => i));
  const rope = (v: Float64Array, heads: number): void => {
    for (let t = 0; t < T; t++) for (let h = 0; h < heads; h++) {
      const base = t * heads * hd + h * hd;
      const orig = v.slice(base, base + hd);
      for (let i = 0; i < hd; i++) {
        const rot = i < hd / 2 ? -(orig[i + hd / 2] as number) : (orig[i - hd / 2] as number);
        v[base + i] = (orig[i] as number) * (cos.data[t * hd + i] as number) + rot * (sin.data[t * hd + i] as number);
      }
    }
  };
  const a = norm(x, 'input_layernorm.weight');
  const q = linear(a, 'self_attn.q_proj', T);
  const k = linear(a, 'self_attn.k_proj', T);
  const v = linear(a, 'self_attn.v_proj', T);
  rope(q, nh);
  rope(k, nkv);
  const ctx = new Float64Array(T * nh * hd);
  for (let h = 0; h < nh; h++) {
    const kvh = Math.floor(h / (nh / nkv));
    for (let t = 0; t < T; t++) {
      const scores: number[] = [];
      for (let s = 0; s <= t; s++) {
        let dot = 0;
        for (let i = 0; i < hd; i++) dot += (q[t * nh * hd + h * hd + i] as number) * (k[s * nkv * hd + kvh * hd + i] as number);
        scores.push(dot / Math.sqrt(hd));
      }
      const m = Math.max(...scores);
      const e = scores.map((s) => Math.exp(s - m));
      const z = e.reduce((p, c) => p + c, 0);
      for (let s = 0; s <= t; s++) for (let i = 0; i < hd; i++) ctx[t * nh * hd + h * hd + i] = (ctx[t * nh * hd + h * hd + i] as number) + ((e[s] as number) / z) * (v[s * nkv * hd + kvh * hd + i] as number);
    }
  }
  const o = linear(ctx, 'self_attn.o_proj', T);
  const h1 = x.map((xi, i) => xi + (o[i] as number));
  const m = norm(h1, 'post_attention_layernorm.weight');
  const gate = linear(m, 'mlp.gate_proj', T);
  const up = linear(m, 'mlp.up_proj', T);
  const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * (up[i] as number));
  const down = linear(act, 'mlp.down_proj', T);
  return h1.map((hi, i) => hi + (down[i] as number));
}

describe('decoder layer graph', () => {
  const cases: [string, Record<string, unknown>][] = [
    ['llama with GQA', { model_type: 'llama', hidden_size: 32, intermediate_size: 44, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 10, rms_norm_eps: 1e-5 }],
    ['qwen2 with q/k/v biases and head_dim 6', { model_type: 'qwen2', hidden_size: 24, intermediate_size: 40, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 1, vocab_size: 10, rms_norm_eps: 1e-6 }],
    ['llama3 rope scaling', { model_type: 'llama', hidden_size: 32, intermediate_size: 48, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2, vocab_size: 10, rope_theta: 500000, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8 } }],
  ];
  for (const [name, raw] of cases) {
    test(`matches a plain TypeScript reference within 1e-4 (${name})`, async () => {
      const cfg = parseModelConfig(raw);
      const weights = randomWeights(cfg, 7);
      const T = 9;
      const rand = seededRandom(3);
      const x = Float32Array.from({ length: 2 * T * cfg.hiddenSize }, () => rand() * 2 - 1);
      const rt = new Runtime({ device: 'cpu' });
      const { out } = await runDecoderLayer(rt, cfg, LLAMA_FAMILY.layer(cfg, 0), weights, tensor('float32', [2, T, cfg.hiddenSize], x));
      for (let b = 0; b < 2; b++) {
        const xs = Float64Array.from(x.subarray(b * T * cfg.hiddenSize, (b + 1) * T * cfg.hiddenSize));
        const ref = referenceLayer(cfg, weights, xs, T);
        const got = (out!.data as Float32Array).subarray(b * T * cfg.hiddenSize, (b + 1) * T * cfg.hiddenSize);
        let num = 0;
        let den = 0;
        ref.forEach((r, i) => {
          num += (r - (got[i] as number)) ** 2;
          den += r * r;
        });
        expect(Math.sqrt(num / den)).toBeLessThan(1e-4);
      }
      await rt.close();
    });
  }
});

describe('chunked attention for long sequences', () => {
  test('agrees with the single-graph layer', async () => {
    const { runLayerChunked } = await import('../../src/graphs/chunked-layer.js');
    const cfg = parseModelConfig({ model_type: 'llama', hidden_size: 32, intermediate_size: 40, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 10, max_position_embeddings: 4096 });
    const weights = randomWeights(cfg, 11);
    const T = 1500;
    const rand = seededRandom(5);
    const x = tensor('float32', [2, T, 32], Float32Array.from({ length: 2 * T * 32 }, () => rand() * 2 - 1));
    const rt = new Runtime({ device: 'cpu' });
    const linears = LLAMA_FAMILY.layer(cfg, 0);
    const whole = (await runDecoderLayer(rt, cfg, linears, weights, x, { skipOut: false, tap: { key: 'none', build: () => ({}) } }))['out']!.data as Float32Array;
    const chunked = (await runLayerChunked(rt, cfg, linears, weights, x, new Map())).data;
    let max = 0;
    whole.forEach((w, i) => (max = Math.max(max, Math.abs(w - (chunked[i] as number)))));
    expect(max).toBeLessThan(1e-4);
    await rt.close();
  });
});
