// The WebGPU execution provider on the smallest shapes (a software Vulkan device in CI is slow): sessions,
// fallback of float64 nodes to the CPU provider, tensors kept on the device between kernels, round half to
// even without a Round node, and one decoder layer against the CPU provider.

import { afterAll, expect, test } from 'vitest';
import { LLAMA_FAMILY } from '../../src/model/arch.js';
import { parseModelConfig } from '../../src/model/config.js';
import { runDecoderLayer } from '../../src/graphs/layer-runner.js';
import { nllKlKernel } from '../../src/graphs/head-graph.js';
import { seededRandom } from '../../src/random.js';
import { Graph } from '../../src/ort/graph.js';
import { Runtime } from '../../src/ort/session.js';
import { tensor, type Tensor } from '../../src/tensor.js';
import { describeWebgpu } from './webgpu-available.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const bits = (a: Float32Array | Float64Array): string[] => Array.from(a, (v) => (Object.is(v, -0) ? '-0' : String(v)));
const f32 = (dims: number[], data: Float32Array): Tensor<'float32'> => tensor('float32', dims, data);

describeWebgpu('webgpu execution provider', () => {
  const cpu = new Runtime({ device: 'cpu', threads: 1 });
  const gpu = new Runtime({ device: 'webgpu', threads: 1, profileDir: mkdtempSync(join(tmpdir(), 'qf-webgpu-profile-')) });
  afterAll(async () => {
    await cpu.close();
    await gpu.close();
  });

  test('creates a session whose nodes run on webgpu, with the CPU provider\'s results', async () => {
    const build = (): Graph => {
      const g = new Graph('tiny');
      const a = g.input('a', 'float32', ['N', 4]);
      const w = g.input('w', 'float32', [4, 3]);
      g.output(g.op('Sigmoid', [g.matmul(a, w)]), 'y');
      return g;
    };
    const a = f32([2, 4], Float32Array.from({ length: 8 }, (_, i) => i / 4 - 1));
    const w = f32([4, 3], Float32Array.from({ length: 12 }, (_, i) => (i % 5) / 5 - 0.4));
    const k = await gpu.kernel('tiny', build);
    expect(k.provider).toBe('webgpu');
    const got = (await k.run({ a, w }))['y']!.data as Float32Array;
    const want = (await (await cpu.kernel('tiny', build)).run({ a, w }))['y']!.data as Float32Array;
    got.forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 6));
    const placed = k.placements().filter((p) => !p.op.startsWith('Memcpy'));
    expect(placed.map((p) => `${p.op}@${p.provider}`).sort()).toEqual(['MatMul@webgpu', 'Sigmoid@webgpu']);
  });

  test('float64 nodes fall back to the CPU provider inside a webgpu session, bit for bit', async () => {
    const build = (): Graph => {
      const g = new Graph('f64');
      const x = g.input('x', 'float64', ['N', 3]);
      g.output(g.matmul(g.transpose(x, [1, 0]), x), 'xtx');
      return g;
    };
    const x = tensor('float64', [4, 3], Float64Array.from({ length: 12 }, (_, i) => Math.sin(i) / 3));
    const k = await gpu.kernel('f64', build);
    const got = (await k.run({ x }))['xtx']!.data as Float64Array;
    const want = (await (await cpu.kernel('f64', build)).run({ x }))['xtx']!.data as Float64Array;
    expect(bits(got)).toEqual(bits(want));
    expect(k.placements().every((p) => p.provider === 'cpu')).toBe(true);
  });

  test('a host kernel runs on the CPU provider inside a webgpu runtime', async () => {
    const k = await gpu.kernel('host-f64', () => {
      const g = new Graph('host');
      const x = g.input('x', 'float64', ['N']);
      g.output(g.mul(x, x), 'y');
      return g;
    }, { host: true });
    expect(k.provider).toBe('cpu');
    expect(Array.from((await k.run({ x: tensor('float64', [2], Float64Array.of(1.5, -2)) }))['y']!.data as Float64Array)).toEqual([2.25, 4]);
    expect(k.placements().every((p) => p.provider === 'cpu')).toBe(true);
  });

  test('keeps outputs on the device between kernels and reads them back once', async () => {
    const square = (): Graph => {
      const g = new Graph('square');
      const a = g.input('a', 'float32', ['N']);
      g.output(g.mul(a, a), 'y');
      return g;
    };
    const k = await gpu.kernel('square', square, { keep: ['y'] });
    await expect(k.run({ a: f32([3], Float32Array.of(1, 2, 3)) })).rejects.toThrow(/runKeep/);
    const a = await gpu.upload(f32([3], Float32Array.of(1, 2, 3)));
    expect(a.onDevice).toBe(true);
    const once = (await k.runKeep({ a })).kept['y']!;
    const twice = (await k.runKeep({ a: once })).kept['y']!;
    expect(twice.onDevice).toBe(true);
    expect(Array.from((await gpu.download(twice)).data as Float32Array)).toEqual([1, 16, 81]);
    once.dispose();
    await expect(k.runKeep({ a: once })).rejects.toThrow(/used after dispose/);
    // on the CPU provider the same calls work, with host tensors
    const c = await cpu.kernel('square', square, { keep: ['y'] });
    const onHost = (await c.runKeep({ a: await cpu.upload(f32([3], Float32Array.of(1, 2, 3))) })).kept['y']!;
    expect(onHost.onDevice).toBe(false);
    expect(Array.from((await cpu.download(onHost)).data as Float32Array)).toEqual([1, 4, 9]);
  });

  test('roundHalfEven runs on webgpu with Round\'s bits on ties and signed zeros', async () => {
    const build = (): Graph => {
      const g = new Graph('round');
      const x = g.input('x', 'float32', ['N']);
      g.output(g.roundHalfEven(x), 'y');
      return g;
    };
    const values = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, -0.3, 0.3, 7.5, -8.5, 127.5, -128.5, 3.25, -3.75, 0];
    const x = f32([values.length], Float32Array.from(values));
    const k = await gpu.kernel('round', build);
    const got = (await k.run({ x }))['y']!.data as Float32Array;
    const round = await cpu.kernel('round-op', () => {
      const g = new Graph('round_op');
      g.output(g.op('Round', [g.input('x', 'float32', ['N'])]), 'y');
      return g;
    });
    expect(bits(got)).toEqual(bits((await round.run({ x }))['y']!.data as Float32Array));
    expect(k.placements().filter((p) => p.provider === 'cpu')).toEqual([]);
  });

  test('one decoder layer forward matches the CPU provider within 1e-5 relative', async () => {
    const cfg = parseModelConfig({ model_type: 'llama', hidden_size: 32, intermediate_size: 48, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 10, rms_norm_eps: 1e-5 });
    const rand = seededRandom(7);
    const fill = (dims: number[], scale: number, offset = 0): Tensor<'float32'> =>
      f32(dims, Float32Array.from({ length: dims.reduce((p, d) => p * d, 1) }, () => offset + scale * (rand() * 2 - 1)));
    const spec = LLAMA_FAMILY.layer(cfg, 0);
    const linears = spec.linears;
    const weights: Record<string, Tensor> = { 'input_layernorm.weight': fill([32], 0.2, 1), 'post_attention_layernorm.weight': fill([32], 0.2, 1) };
    for (const l of linears) weights[`${l.local}.weight`] = fill([l.outFeatures, l.inFeatures], 1 / Math.sqrt(l.inFeatures));
    const x = fill([2, 7, 32], 1);
    const want = (await runDecoderLayer(cpu, cfg, spec, weights, x))['out']!.data as Float32Array;
    const got = (await runDecoderLayer(gpu, cfg, spec, weights, x))['out']!.data as Float32Array;
    let num = 0;
    let den = 0;
    want.forEach((w, i) => {
      num += (w - got[i]!) ** 2;
      den += w * w;
    });
    expect(Math.sqrt(num / den)).toBeLessThan(1e-5);
  });

  test('the evaluation head runs every node on webgpu (no LogSoftmax, no int64 Unsqueeze) with the CPU\'s NLL and KL', async () => {
    const cfg = parseModelConfig({ model_type: 'llama', hidden_size: 32, intermediate_size: 48, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 50, rms_norm_eps: 1e-5 });
    const rand = seededRandom(11);
    const fill = (dims: number[], scale: number, offset = 0): Tensor<'float32'> =>
      f32(dims, Float32Array.from({ length: dims.reduce((p, d) => p * d, 1) }, () => offset + scale * (rand() * 2 - 1)));
    const [B, T] = [2, 9];
    const targets = tensor('int64', [B, T - 1, 1], BigInt64Array.from({ length: B * (T - 1) }, (_, i) => BigInt((i * 7) % 50)));
    const feeds = {
      x: fill([B, T, 32], 2), norm: fill([32], 0.2, 1), lm_head: fill([50, 32], 3),
      x_ref: fill([B, T, 32], 2), norm_ref: fill([32], 0.2, 1), lm_head_ref: fill([50, 32], 3), targets,
    };
    const k = await nllKlKernel(gpu, cfg);
    const got = await k.run(feeds);
    const want = await (await nllKlKernel(cpu, cfg)).run(feeds);
    for (const name of ['nll', 'nll_ref', 'kl']) {
      const [g, w] = [got[name]!.data as Float32Array, want[name]!.data as Float32Array];
      w.forEach((v, i) => expect(Math.abs(g[i]! - v), `${name}[${i}]`).toBeLessThan(2e-5 * Math.max(1, Math.abs(v))));
    }
    expect(k.placements().filter((p) => p.provider === 'cpu' && !p.op.startsWith('Memcpy')).map((p) => p.op)).toEqual([]);
  });
});
