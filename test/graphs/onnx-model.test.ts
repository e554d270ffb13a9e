// OnnxModel.generate on a GroupQueryAttention export: the shared KV buffers start short and grow as the
// sequence fills them (kvBufferLength); every greedy token must be the one the whole sequence run at once,
// without a cache, predicts at that position.

import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ExternalData, writeModelFile } from '../../src/formats/onnx-file.js';
import { buildExportGraph } from '../../src/graphs/export-graph.js';
import { kvBufferLength, OnnxModel } from '../../src/graphs/onnx-model.js';
import { HfSource } from '../../src/model/source.js';
import { Runtime } from '../../src/ort/session.js';
import { writeExampleModel } from '../../src/steps/example-model.js';
import { tensor, type Tensor } from '../../src/tensor.js';

const rt = new Runtime({ device: 'cpu' });
let root: string;
let model: OnnxModel;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'qf-onnx-model-'));
  await writeExampleModel(rt, join(root, 'model'), { size: 'tiny', seed: 0, dtype: 'f32' });
  const src = await HfSource.open(join(root, 'model'));
  const out = join(root, 'export');
  await mkdir(join(out, 'onnx'), { recursive: true });
  const data = new ExternalData(join(out, 'onnx', 'model.onnx_data'));
  const g = await buildExportGraph({ config: src.config, arch: src.arch, tensor: (n) => src.tensor(n), layer: async (l) => ({ tensors: await src.layer(l), quant: {} }) }, data, { accuracyLevel: 0 });
  await data.finish();
  await writeModelFile(join(out, 'onnx', 'model.onnx'), g.build());
  // the shared-buffer decoding path is taken for GroupQueryAttention exports only
  expect(readFileSync(join(out, 'onnx', 'model.onnx')).includes('GroupQueryAttention')).toBe(true);
  model = await OnnxModel.open(rt, out, src.config);
  await src.close();
}, 120_000);
afterAll(async () => {
  await model?.close();
  await rt.close();
  await rm(root, { recursive: true, force: true });
});

/** the greedy token after each position of `seq`, from one cacheless forward of the whole sequence */
async function argmaxes(seq: number[]): Promise<number[]> {
  const V = model.config.vocabSize;
  const empty: Record<string, Tensor> = {};
  for (let l = 0; l < model.config.numLayers; l++) {
    for (const kv of ['key', 'value']) empty[`past_key_values.${l}.${kv}`] = tensor('float32', [1, model.config.numKvHeads, 0, model.config.headDim]);
  }
  const { logits } = await model.forward([seq], 0, empty);
  return Array.from({ length: seq.length }, (_, t) => {
    const row = logits.data.subarray(t * V, (t + 1) * V);
    let best = 0;
    for (let v = 1; v < V; v++) if ((row[v] as number) > (row[best] as number)) best = v;
    return best;
  });
}

describe('kvBufferLength', () => {
  test('holds what is needed, a quarter more in steps of 32 positions, never past the final length', () => {
    expect(kvBufferLength(3, 34)).toBe(32);
    expect(kvBufferLength(33, 34)).toBe(34);
    expect(kvBufferLength(100, 1000)).toBe(128);
    expect(kvBufferLength(129, 1000)).toBe(192);
    for (let final = 1; final <= 300; final += 7) {
      for (let needed = 1; needed <= final; needed++) {
        const n = kvBufferLength(needed, final);
        expect(n).toBeGreaterThanOrEqual(needed);
        expect(n).toBeLessThanOrEqual(final);
      }
    }
  });
});

describe('OnnxModel.generate with growing shared KV buffers', () => {
  test('every token is the cacheless forward’s greedy token, across several growths of the buffers', async () => {
    const prompt = [1, 40, 41, 42, 43];
    // final length 5 + 89 = 94: buffers of 32, then 64, then 94 positions
    const seq = await model.generate(prompt, 90, false);
    expect(seq).toHaveLength(prompt.length + 90);
    const predicted = await argmaxes(seq.slice(0, -1));
    expect(seq.slice(prompt.length)).toEqual(predicted.slice(prompt.length - 1));
  });

  test('a prompt longer than the first buffer step and a short continuation', async () => {
    const prompt = Array.from({ length: 40 }, (_, i) => 3 + ((i * 7) % 200));
    const seq = await model.generate(prompt, 6, false);
    const predicted = await argmaxes(seq.slice(0, -1));
    expect(seq.slice(prompt.length)).toEqual(predicted.slice(prompt.length - 1));
  });
});
