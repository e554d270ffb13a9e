// The synthetic example model: deterministic, the planned vocabulary size, planted outlier channels.

import { describe, expect, test } from 'vitest';
import { EXAMPLE_VOCAB_SIZE, exampleTokenizer } from '../../src/model/example-tokenizer.js';
import { exampleModelConfig, exampleTensor, outlierChannels } from '../../src/model/example-model.js';

describe('example model', () => {
  test('the tokenizer has exactly the vocabulary size plans assume', () => {
    expect(exampleTokenizer(512).vocabSize).toBe(EXAMPLE_VOCAB_SIZE);
  });

  test('tensors are a deterministic function of seed and name', () => {
    const cfg = exampleModelConfig('tiny', EXAMPLE_VOCAB_SIZE);
    const a = exampleTensor(cfg, 0, 'model.layers.1.mlp.up_proj.weight');
    const b = exampleTensor(cfg, 0, 'model.layers.1.mlp.up_proj.weight');
    const c = exampleTensor(cfg, 1, 'model.layers.1.mlp.up_proj.weight');
    expect(a.data).toEqual(b.data);
    expect(a.data).not.toEqual(c.data);
  });

  test('norm weights carry the planted outlier channels', () => {
    const cfg = exampleModelConfig('tiny', EXAMPLE_VOCAB_SIZE);
    const w = exampleTensor(cfg, 0, 'model.layers.0.input_layernorm.weight').data;
    const out = new Set(outlierChannels(cfg, 0));
    expect(out.size).toBeGreaterThanOrEqual(2);
    for (let c = 0; c < cfg.hiddenSize; c++) {
      if (out.has(c)) expect(w[c]).toBeGreaterThan(5);
      else expect(Math.abs((w[c] as number) - 1)).toBeLessThan(0.6);
    }
  });
});
