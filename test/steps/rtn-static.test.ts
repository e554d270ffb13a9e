// rtn with static input ranges: FP8's input_scale and NVFP4's input_global_scale come from the largest |x| of
// each Linear's input over the calibration windows (the layer as it comes in); NVFP4 global scales are shared
// by the Linears that read one input; the step passes the quantized layer's outputs on as the next inputs.

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { writeSafetensors } from '../../src/formats/safetensors.js';
import { runDecoderLayer, type LayerTap } from '../../src/graphs/layer-runner.js';
import { exampleConfigJson, exampleModelConfig, exampleTensor, exampleTensorNames } from '../../src/model/example-model.js';
import { exampleTokenizer } from '../../src/model/example-tokenizer.js';
import { tensor, type Tensor } from '../../src/tensor.js';
import { HfSource } from '../../src/model/source.js';
import { Runtime } from '../../src/ort/session.js';
import type { ModuleQuant } from '../../src/quant/module-quant.js';
import { presetScheme } from '../../src/quant/scheme.js';
import { readHidden, writeHidden } from '../../src/steps/activations.js';
import { readLayerState } from '../../src/steps/layer-state.js';
import { rtnStep } from '../../src/steps/rtn.js';
import { stepContext, type TinyModel } from './tiny-model.js';

const rt = new Runtime({ device: 'cpu', threads: 2 });
/** the tiny example model's weights (no text: the calibration inputs are seeded values with an outlier channel) */
const tiny = {} as TinyModel & { embedded: Tensor<'float32'> };
beforeAll(async () => {
  tiny.root = await mkdtemp(join(tmpdir(), 'qf-rtn-static-'));
  tiny.modelDir = join(tiny.root, 'model');
  tiny.embedDir = join(tiny.root, 'hidden');
  const { vocabSize } = exampleTokenizer(512);
  const cfg = exampleModelConfig('tiny', vocabSize);
  await mkdir(tiny.modelDir);
  await mkdir(tiny.embedDir);
  await writeFile(join(tiny.modelDir, 'config.json'), JSON.stringify(exampleConfigJson('tiny', vocabSize, 'f32')));
  await writeSafetensors(join(tiny.modelDir, 'model.safetensors'), exampleTensorNames(cfg).map((n) => [n, exampleTensor(cfg, 0, n)] as const));
  let s = 5;
  const [N, T, H] = [4, 32, cfg.hiddenSize];
  tiny.embedded = tensor('float32', [N, T, H], Float32Array.from({ length: N * T * H }, (_, i) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return ((s / 2 ** 32) * 2 - 1) * (i % H === 7 ? 8 : 1);
  }));
  await writeHidden(tiny.embedDir, tiny.embedded);
  const src = await HfSource.open(tiny.modelDir);
  tiny.layer0 = await src.layer(0);
  await src.close();
});
afterAll(async () => {
  await rm(tiny.root, { recursive: true, force: true });
  await rt.close();
});

async function siteMax(site: string): Promise<number> {
  const src = await HfSource.open(tiny.modelDir);
  try {
    const tap: LayerTap = { key: `test.site:${site}`, build: (_g, v) => ({ act: v.sites[site as 'attn_in']! }) };
    // the basic-op layer, as calibration runs it (steps/activations.ts)
    const act = (await runDecoderLayer(rt, src.config, src.arch.layer(src.config, 0), tiny.layer0, tiny.embedded, { tap, skipOut: true, fused: false }))['act']!.data as Float32Array;
    return act.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  } finally {
    await src.close();
  }
}

async function run(scheme: string) {
  const s = presetScheme(scheme, ['Linear']);
  const src = await HfSource.open(tiny.modelDir);
  const linears = src.arch.layer(src.config, 0).linears;
  await src.close();
  const modules: Record<string, ModuleQuant> = Object.fromEntries(linears.map((l) => [l.local, { weights: s.weights!, input_activations: s.input_activations }]));
  const ctx = await stepContext(rt, tiny, { layer: 0, modules }, { hidden: tiny.embedDir });
  const result = (await rtnStep.run(ctx)) as { input_scales: Record<string, number> };
  return { result, state: await readLayerState(ctx.outDir, 0), next: await readHidden(ctx.outDir) };
}

describe('rtn with static input ranges', () => {
  test('FP8: input_scale = max|x| / 448 of each input over the calibration windows', async () => {
    const { result, state, next } = await run('FP8');
    const attn = await siteMax('attn_in');
    const down = await siteMax('down_in');
    expect(result.input_scales['self_attn.q_proj.input_scale']).toBe(Math.fround(attn / 448));
    expect(state.tensors['self_attn.k_proj.input_scale']!.data[0]).toBe(Math.fround(attn / 448));
    expect(state.tensors['mlp.down_proj.input_scale']!.data[0]).toBe(Math.fround(down / 448));
    expect(next.dims).toEqual(tiny.embedded.dims);
  });

  test('NVFP4: input_global_scale = 2688 / max|x|; q/k/v share the smallest weight global scale', async () => {
    const { state } = await run('NVFP4');
    const attn = await siteMax('attn_in');
    expect(state.tensors['self_attn.v_proj.input_global_scale']!.data[0]).toBe(Math.fround(2688 / attn));
    const wmax = ['q', 'k', 'v'].map((p) => tiny.layer0[`self_attn.${p}_proj.weight`]!.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0));
    const shared = Math.fround(2688 / Math.max(...wmax));
    for (const p of ['q', 'k', 'v']) expect(state.quant[`self_attn.${p}_proj`]!.globalScale!.data[0]).toBe(shared);
    const oMax = tiny.layer0['self_attn.o_proj.weight']!.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    expect(state.quant['self_attn.o_proj']!.globalScale!.data[0]).toBe(Math.fround(2688 / oMax));
  });
});
