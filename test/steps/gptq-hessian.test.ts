// Data-parallel GPTQ calibration on the tiny model's layer 0: the gptq-hessian shard steps' XᵀX sums over
// disjoint window ranges add up to the one-pass capture (and to XᵀX of the normed inputs computed here in
// float64), and the gptq step fed the shards quantizes as the one that captures its Hessians itself.

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { rmsNorm } from '../../src/graphs/decoder-graph.js';
import { Graph } from '../../src/ort/graph.js';
import { Runtime } from '../../src/ort/session.js';
import { presetScheme } from '../../src/quant/scheme.js';
import type { ModuleQuant } from '../../src/quant/module-quant.js';
import { SafetensorsFile } from '../../src/formats/safetensors.js';
import { gptqHessianStep, type GptqHessianParams } from '../../src/steps/gptq-hessian.js';
import { gptqStep, type GptqParams } from '../../src/steps/gptq.js';
import { addGrams, splitGrams, xtxTap } from '../../src/steps/gptq-job.js';
import { forEachBatch } from '../../src/steps/activations.js';
import { HfSource } from '../../src/model/source.js';
import { HESSIAN_FILE, shardWindows, sumHessianPartials } from '../../src/steps/hessian-partials.js';
import { readLayerState } from '../../src/steps/layer-state.js';
import type { StepContext } from '../../src/steps/types.js';
import { stepContext, writeTinyModel, type TinyModel } from './tiny-model.js';

const rt = new Runtime({ device: 'cpu' });
let tiny: TinyModel;
// 16 windows of 512 tokens, run 4 windows per onnxruntime call (activations.ts layerBatch): 4 shards of one
// batch each
const [WINDOWS, SEQ, SHARDS] = [16, 512, 4];
const SITES = ['attn_in', 'o_in', 'mlp_in', 'down_in'];
const LOCALS = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];
const scheme = presetScheme('W4A16', ['Linear']);
const MODULES: Record<string, ModuleQuant> = Object.fromEntries(LOCALS.map((m) => [m, { weights: scheme.weights!, input_activations: scheme.input_activations }]));
const WIDTH: Record<string, number> = { attn_in: 256, o_in: 256, mlp_in: 256, down_in: 688 };

beforeAll(async () => {
  tiny = await writeTinyModel(rt, 'gptq-hessian', WINDOWS, SEQ);
});

afterAll(async () => {
  await rt.close();
  await tiny.close();
});

async function shard(shard: number, shards: number): Promise<string> {
  const ctx = await stepContext<GptqHessianParams>(rt, tiny, { layer: 0, sites: SITES, range_sites: [], shard, shards }, { hidden: tiny.embedDir });
  await gptqHessianStep.run(ctx);
  return ctx.outDir;
}

const relDiff = (a: Float64Array, b: Float64Array): number => {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += ((a[i] as number) - (b[i] as number)) ** 2;
    den += (a[i] as number) ** 2;
  }
  return Math.sqrt(num / den);
};

/** 2·XᵀX / n of the layer's first input site (RMSNorm of the embeddings, times input_layernorm), in float64 here */
async function attnInHessian(): Promise<Float64Array> {
  const H = 256;
  const k = await rt.kernel('test.gptq-hessian.norm', () => {
    const g = new Graph('norm');
    g.output(rmsNorm(g, g.input('x', 'float32', ['B', 'T', H]), g.input('w', 'float32', [H]), 1e-5), 'y');
    return g;
  });
  const y = (await k.run({ x: tiny.embedded, w: tiny.layer0['input_layernorm.weight']! }))['y']!.data as Float32Array;
  const n = y.length / H;
  const h = new Float64Array(H * H);
  for (let t = 0; t < n; t++) {
    for (let i = 0; i < H; i++) {
      const yi = y[t * H + i] as number;
      for (let j = 0; j < H; j++) h[i * H + j] = (h[i * H + j] as number) + yi * (y[t * H + j] as number);
    }
  }
  return h.map((v) => (2 * v) / n);
}

describe('gptq-hessian shards', () => {
  test('shard window ranges are disjoint and cover every window', () => {
    expect([0, 1, 2, 3].map((s) => shardWindows(10, s, 4))).toEqual([[0, 2], [2, 5], [5, 7], [7, 10]]);
    expect([0, 1, 2].map((s) => shardWindows(2, s, 3))).toEqual([[0, 0], [0, 1], [1, 2]]);
    // on batch boundaries counted from window 0: 12 windows in batches of 4 over 4 shards, 10 over 2
    expect([0, 1, 2, 3].map((s) => shardWindows(12, s, 4, 4))).toEqual([[0, 0], [0, 4], [4, 8], [8, 12]]);
    expect([0, 1].map((s) => shardWindows(10, s, 2, 4))).toEqual([[0, 4], [4, 10]]);
  });

  test('4 shards sum to the one-pass Hessians within 1e-5 relative, and attn_in to XᵀX of the normed inputs', async () => {
    const dirs = await Promise.all(Array.from({ length: SHARDS }, (_, s) => shard(s, SHARDS)));
    const whole = await shard(0, 1);
    const tokens = WINDOWS * SEQ;
    const f = await SafetensorsFile.open(join(dirs[1]!, HESSIAN_FILE));
    expect(((await f.read('tokens')).data as Float64Array)[0]).toBe(4 * SEQ);
    await f.close();
    const summed = await sumHessianPartials(dirs, SITES as never, (s) => WIDTH[s]!, tokens, [], new Map());
    const one = await sumHessianPartials([whole], SITES as never, (s) => WIDTH[s]!, tokens, [], new Map());
    const diffs = Object.fromEntries(SITES.map((s) => [s, relDiff(one.get(s as never)!, summed.get(s as never)!)]));
    console.log('summed 4-shard vs one-pass Hessian, relative Frobenius difference per site:', diffs);
    for (const s of SITES) expect(diffs[s], s).toBeLessThan(1e-5);
    const direct = relDiff(await attnInHessian(), summed.get('attn_in' as never)!);
    console.log('attn_in: shards vs XᵀX computed here:', direct);
    expect(direct).toBeLessThan(1e-5);
    await expect(sumHessianPartials(dirs.slice(1), SITES as never, (s) => WIDTH[s]!, tokens, [], new Map())).rejects.toThrow(/hold 6144 calibration tokens, the layer's inputs 8192/);
  });

  test('the gptq step fed 4 shards quantizes as the one that captures: the same codes and output errors', async () => {
    const dirs = await Promise.all(Array.from({ length: SHARDS }, (_, s) => shard(s, SHARDS)));
    const params: GptqParams = { layer: 0, modules: MODULES, block_size: 128, dampening_frac: 0.01, actorder: 'static', offload_hessians: false };
    const run = async (partials: string[], offload = false): Promise<{ outDir: string; result: Record<string, { output_error: number }> }> => {
      const ctx: StepContext<GptqParams> = await stepContext<GptqParams>(rt, tiny, { ...params, offload_hessians: offload }, { hidden: tiny.embedDir });
      if (partials.length > 0) ctx.inputs['partials'] = partials.map((dir, i) => ({ id: `shard.${i}`, kind: 'gptq-hessian', dir, result: null }));
      const r = (await gptqStep.run(ctx)) as { modules: Record<string, { output_error: number }> };
      return { outDir: ctx.outDir, result: r.modules };
    };
    const alone = await run([]);
    for (const offload of [false, true]) {
      const sharded = await run(dirs, offload);
      const [a, b] = [await readLayerState(alone.outDir, 0), await readLayerState(sharded.outDir, 0)];
      let differ = 0;
      let total = 0;
      for (const m of LOCALS) {
        const [ca, cb] = [a.quant[m]!.codes.data, b.quant[m]!.codes.data];
        total += ca.length;
        for (let i = 0; i < ca.length; i++) if (ca[i] !== cb[i]) differ++;
        expect(Math.abs(sharded.result[m]!.output_error - alone.result[m]!.output_error), m).toBeLessThan(1e-6 * alone.result[m]!.output_error + 1e-12);
      }
      console.log(`offload_hessians ${offload}: ${differ} of ${total} codes differ (${((100 * differ) / total).toFixed(4)} %)`);
      // each shard's float32 batch Grams are the one-pass run's (shards on batch boundaries): the same Hessians
      expect(differ).toBe(0);
    }
  });

  test("GPU runs' Hessians: the Gram of the tapped activations on the CPU provider has the in-graph tap's bits", async () => {
    const src = await HfSource.open(tiny.modelDir);
    const layer = src.arch.layer(src.config, 0);
    await src.close();
    const sums = async (host: boolean): Promise<Map<string, Float64Array>> => {
      const acc = new Map(SITES.map((s) => [s, new Float64Array(WIDTH[s]! ** 2)] as const));
      const tap = xtxTap(SITES as never, (s) => WIDTH[s]!, false, host);
      await forEachBatch(rt, src.config, layer, tiny.layer0, tiny.embedded, { tap, skipOut: true }, (out) => addGrams(rt, acc as never, out));
      return acc;
    };
    const [inGraph, onHost] = [await sums(false), await sums(true)];
    for (const s of SITES) expect(Buffer.from(onHost.get(s)!.buffer).equals(Buffer.from(inGraph.get(s)!.buffer)), s).toBe(true);
  });

  test('a capture split into one-window runs reduces each batch to the one-run capture\'s bits (splitGrams)', async () => {
    const src = await HfSource.open(tiny.modelDir);
    const layer = src.arch.layer(src.config, 0);
    await src.close();
    const width = (s: string): number => WIDTH[s]!;
    const fresh = (): Map<string, Float64Array> => new Map(SITES.map((s) => [s, new Float64Array(WIDTH[s]! ** 2)] as const));
    const oneRun = fresh();
    await forEachBatch(rt, src.config, layer, tiny.layer0, tiny.embedded, { tap: xtxTap(SITES as never, width as never, false, false), skipOut: true }, (out) => addGrams(rt, oneRun as never, out));
    // 3 windows per run: runs of 3 and 1 inside each batch of 4, never across one
    for (const [windows, expectRuns] of [[1, WINDOWS], [3, (WINDOWS / 4) * 2]] as const) {
      const split = fresh();
      let [runs, batches] = [0, 0];
      const o = { sites: SITES as never, width: width as never, routed: false, windows, actQuant: new Map() };
      await splitGrams(rt, src.config, layer, tiny.layer0, tiny.embedded, o, split as never, () => void runs++, () => void batches++);
      expect([runs, batches]).toEqual([expectRuns, WINDOWS / 4]);
      for (const s of SITES) expect(Buffer.from(split.get(s)!.buffer).equals(Buffer.from(oneRun.get(s)!.buffer)), `${s}, ${windows} per run`).toBe(true);
    }
  });

  test('FP8 static input scales: the shards max-reduce the ranges to the same input_scale tensors', async () => {
    const fp8 = presetScheme('FP8', ['Linear']);
    const modules: Record<string, ModuleQuant> = Object.fromEntries(LOCALS.map((m) => [m, { weights: fp8.weights!, input_activations: fp8.input_activations }]));
    const dirs: string[] = [];
    for (let k = 0; k < SHARDS; k++) {
      const ctx = await stepContext<GptqHessianParams>(rt, tiny, { layer: 0, sites: SITES, range_sites: SITES, shard: k, shards: SHARDS }, { hidden: tiny.embedDir });
      await gptqHessianStep.run(ctx);
      dirs.push(ctx.outDir);
    }
    const params: GptqParams = { layer: 0, modules, block_size: 128, dampening_frac: 0.01, actorder: null, offload_hessians: false };
    const scales = async (partials: string[]): Promise<unknown> => {
      const ctx = await stepContext<GptqParams>(rt, tiny, params, { hidden: tiny.embedDir });
      if (partials.length > 0) ctx.inputs['partials'] = partials.map((dir, i) => ({ id: `shard.${i}`, kind: 'gptq-hessian', dir, result: null }));
      return ((await gptqStep.run(ctx)) as { input_scales: unknown }).input_scales;
    };
    const want = await scales([]);
    expect(Object.keys(want as object)).toHaveLength(LOCALS.length);
    expect(await scales(dirs)).toEqual(want);
  });
});
