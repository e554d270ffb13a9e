import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { writeSafetensors } from '../../src/formats/safetensors.js';
import type { InputSite } from '../../src/model/arch.js';
import { exampleConfigJson, exampleModelConfig, exampleTensor, exampleTensorNames } from '../../src/model/example-model.js';
import { exampleTokenizer } from '../../src/model/example-tokenizer.js';
import { runDecoderLayer, type LayerTap } from '../../src/graphs/layer-runner.js';
import { HfSource } from '../../src/model/source.js';
import { Runtime } from '../../src/ort/session.js';
import { tensor, type Tensor } from '../../src/tensor.js';
import { writeHidden } from '../../src/steps/activations.js';
import { CaptureError, captureStep, readStatistic, type CaptureParams } from '../../src/steps/capture.js';
import { writeLayerState } from '../../src/steps/layer-state.js';
import type { StepContext } from '../../src/steps/types.js';

const rt = new Runtime({ device: 'cpu', threads: 2 });
let root: string;
let modelDir: string;
let hiddenDir: string;
let hidden: Tensor<'float32'>;
const [N, T] = [3, 12];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'qf-capture-'));
  modelDir = join(root, 'model');
  hiddenDir = join(root, 'hidden');
  const { vocabSize } = exampleTokenizer(512);
  const cfg = exampleModelConfig('tiny', vocabSize);
  await mkdir(modelDir);
  await mkdir(hiddenDir);
  await writeFile(join(modelDir, 'config.json'), JSON.stringify(exampleConfigJson('tiny', vocabSize, 'f32')));
  await writeSafetensors(join(modelDir, 'model.safetensors'), exampleTensorNames(cfg).map((n) => [n, exampleTensor(cfg, 0, n)] as const));
  let s = 9;
  const data = Float32Array.from({ length: N * T * cfg.hiddenSize }, (_, i) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return ((s / 2 ** 32) * 2 - 1) * (i % cfg.hiddenSize === 17 ? 10 : 1);
  });
  hidden = tensor('float32', [N, T, cfg.hiddenSize], data);
  await writeHidden(hiddenDir, hidden);
});

afterAll(async () => {
  await rt.close();
  await rm(root, { recursive: true, force: true });
});

async function context(params: CaptureParams, state?: string): Promise<StepContext<CaptureParams>> {
  const outDir = await mkdtemp(join(root, 'out-'));
  const inputs: StepContext<CaptureParams>['inputs'] = { hidden: { id: 'embed', kind: 'embed', dir: hiddenDir, result: null } };
  if (state) inputs['state'] = { id: 'state', kind: 'rtn', dir: state, result: null };
  return { id: 'capture', params, inputs, files: {}, modelDir, outDir, runtime: rt, progress() {}, warn() {}, signal: new AbortController().signal };
}

/** per-channel max |X| and mean |X| of a site, reduced in JavaScript from the layer's tapped activation */
async function reference(weights: Record<string, Tensor>, site: InputSite): Promise<{ max: number[]; mean: number[] }> {
  const src = await HfSource.open(modelDir);
  const tap: LayerTap = { key: `ref.${site}`, build: (_g, v) => ({ act: v.sites[site]! }) };
  const x = (await runDecoderLayer(rt, src.config, src.arch.layer(src.config, 0), weights, hidden, { tap, skipOut: true }))['act']!;
  await src.close();
  const width = x.dims[2] as number;
  const max = new Array<number>(width).fill(0);
  const sum = new Array<number>(width).fill(0);
  (x.data as Float32Array).forEach((v, i) => {
    max[i % width] = Math.max(max[i % width]!, Math.abs(v));
    sum[i % width] = sum[i % width]! + Math.abs(v);
  });
  return { max, mean: sum.map((v) => v / (N * T)) };
}

const baseLayer = async (): Promise<Record<string, Tensor<'float32'>>> => {
  const src = await HfSource.open(modelDir);
  try {
    return await src.layer(0);
  } finally {
    await src.close();
  }
};

describe('capture step', () => {
  test('records max |X| per channel of each requested Linear input over every token', async () => {
    const ctx = await context({ layer: 0, statistic: 'absmax', modules: ['self_attn.q_proj', 'mlp.down_proj'] });
    const result = await captureStep.run(ctx);
    expect(result).toMatchObject({ statistic: 'absmax', tokens: N * T });
    const weights = await baseLayer();
    for (const [m, site] of [['self_attn.q_proj', 'attn_in'], ['mlp.down_proj', 'down_in']] as const) {
      const got = await readStatistic(ctx.outDir, m, 'absmax');
      const want = (await reference(weights, site)).max;
      expect(got.length).toBe(want.length);
      want.forEach((v, j) => expect(got[j]).toBeCloseTo(v, 4));
    }
  });

  test('records mean |X| per channel, and Linears sharing an input share the statistic', async () => {
    const ctx = await context({ layer: 0, statistic: 'absmean', modules: ['mlp.gate_proj', 'mlp.up_proj', 'self_attn.o_proj'] });
    await captureStep.run(ctx);
    const want = (await reference(await baseLayer(), 'mlp_in')).mean;
    const gate = await readStatistic(ctx.outDir, 'mlp.gate_proj', 'absmean');
    want.forEach((v, j) => expect(gate[j]).toBeCloseTo(v, 4));
    expect(Array.from(await readStatistic(ctx.outDir, 'mlp.up_proj', 'absmean'))).toEqual(Array.from(gate));
    expect((await readStatistic(ctx.outDir, 'self_attn.o_proj', 'absmean')).length).toBe(256);
  });

  test('measures the layer as the previous stage left it when a state is given', async () => {
    const weights = await baseLayer();
    const norm = weights['input_layernorm.weight']!;
    weights['input_layernorm.weight'] = tensor('float32', norm.dims, Float32Array.from(norm.data, (v) => 3 * v));
    const stateDir = await mkdtemp(join(root, 'state-'));
    await writeLayerState(stateDir, { layer: 0, tensors: weights, quant: {} });
    const base = await context({ layer: 0, statistic: 'absmax', modules: ['self_attn.k_proj'] });
    const scaled = await context({ layer: 0, statistic: 'absmax', modules: ['self_attn.k_proj'] }, stateDir);
    await captureStep.run(base);
    await captureStep.run(scaled);
    const a = await readStatistic(base.outDir, 'self_attn.k_proj', 'absmax');
    const b = await readStatistic(scaled.outDir, 'self_attn.k_proj', 'absmax');
    a.forEach((v, j) => expect(b[j]).toBeCloseTo(3 * v, 3));
  });

  test('rejects a module that is not a Linear of the layer, naming the allowed ones', async () => {
    const ctx = await context({ layer: 0, statistic: 'absmax', modules: ['self_attn.qkv_proj'] });
    await expect(captureStep.run(ctx)).rejects.toThrow(/"self_attn.qkv_proj" is not a Linear.*self_attn.q_proj/);
  });

  test('rejects an unknown statistic', async () => {
    const ctx = await context({ layer: 0, statistic: 'absmin' as never, modules: ['self_attn.q_proj'] });
    await expect(captureStep.run(ctx)).rejects.toBeInstanceOf(CaptureError);
  });

  test('reading a statistic the capture did not record fails with missing-statistic', async () => {
    const ctx = await context({ layer: 0, statistic: 'absmax', modules: ['self_attn.q_proj'] });
    await captureStep.run(ctx);
    await expect(readStatistic(ctx.outDir, 'self_attn.q_proj', 'absmean')).rejects.toMatchObject({ reason: 'missing-statistic' });
  });
});
