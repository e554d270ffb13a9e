// Which layers the fused layer (GroupQueryAttention, SimplifiedLayerNormalization) may compute: plain
// Llama-family layers only; every layer of the newer architectures falls back to the basic-op graph, and a run
// on one of them equals the basic-op layer bit for bit (it is the same graph).

import { describe, expect, test } from 'vitest';
import { fusedLayerSupport } from '../../src/graphs/fused-layer.js';
import { runDecoderLayer } from '../../src/graphs/layer-runner.js';
import { archFor } from '../../src/model/arch.js';
import { parseModelConfig } from '../../src/model/config.js';
import { exampleConfigJson, exampleModelConfig } from '../../src/model/example-model.js';
import { Runtime } from '../../src/ort/session.js';
import { seededRandom } from '../../src/random.js';
import { tensor, type Tensor } from '../../src/tensor.js';
import { ARCH_MODELS, archConfigJson, archTensors } from '../fixtures/arch-models.js';

describe('fusedLayerSupport', () => {
  test('llama, mistral and qwen2 layers (head_dim a multiple of 8) run fused', () => {
    const llama = exampleModelConfig('tiny', 512);
    for (const modelType of ['llama', 'mistral', 'qwen2']) {
      const cfg = parseModelConfig({ ...exampleConfigJson('tiny', 512, 'f32'), model_type: modelType });
      const arch = archFor(cfg);
      for (let l = 0; l < cfg.numLayers; l++) expect(fusedLayerSupport(cfg, arch.layer(cfg, l)), `${modelType} layer ${l}`).toBe(fusedLayerSupport(llama, archFor(llama).layer(llama, 0)));
    }
    expect(fusedLayerSupport(llama, archFor(llama).layer(llama, 0))).toBeDefined();
  });

  test('no layer of qwen3, gemma3_text, mixtral or qwen3_moe runs fused', () => {
    for (const a of ARCH_MODELS) {
      const cfg = parseModelConfig(archConfigJson(a, 64));
      const arch = archFor(cfg);
      for (let l = 0; l < cfg.numLayers; l++) expect(fusedLayerSupport(cfg, arch.layer(cfg, l)), `${a} layer ${l}`).toBeUndefined();
    }
  });

  test('a qwen3 layer run with the default options is the basic-op layer, bit for bit', async () => {
    const cfg = parseModelConfig(archConfigJson('qwen3', 64));
    const spec = archFor(cfg).layer(cfg, 0);
    const prefix = 'model.layers.0.';
    const weights: Record<string, Tensor> = {};
    for (const [name, t] of archTensors(cfg, 0)) if (name.startsWith(prefix)) weights[name.slice(prefix.length)] = t;
    const rand = seededRandom(4);
    const x = tensor('float32', [2, 16, cfg.hiddenSize], Float32Array.from({ length: 2 * 16 * cfg.hiddenSize }, () => rand() * 2 - 1));
    const rt = new Runtime({ device: 'cpu' });
    try {
      const byDefault = (await runDecoderLayer(rt, cfg, spec, weights, x))['out']!.data as Float32Array;
      const basic = (await runDecoderLayer(rt, cfg, spec, weights, x, { fused: false }))['out']!.data as Float32Array;
      expect(Buffer.from(byDefault.buffer).equals(Buffer.from(basic.buffer))).toBe(true);
    } finally {
      await rt.close();
    }
  });
});
