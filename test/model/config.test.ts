// config.json of the newer architectures: the features each one switches on, both rope layouts HF writes, and
// what is refused by name; and the adapters' module tables (routers are Linears that `Linear` never selects).

import { describe, expect, test } from 'vitest';
import { matchModules } from '../../src/algo/targets.js';
import { archFor } from '../../src/model/arch.js';
import { MODEL_TYPES, parseModelConfig } from '../../src/model/config.js';
import { archConfigJson } from '../fixtures/arch-models.js';

const parse = (raw: Record<string, unknown>) => parseModelConfig(raw, 'config.json');

describe('parseModelConfig', () => {
  test('qwen3: per-head q/k norms and an explicit head_dim', () => {
    const cfg = parse(archConfigJson('qwen3', 512));
    expect(cfg.features.qkNorm).toBe(true);
    expect(cfg.headDim).toBe(32);
    expect(cfg.features.moe).toBeNull();
  });

  test('gemma3_text: norms, GELU-tanh, local/global layers and their ropes, attention and embedding scales, softcap', () => {
    const cfg = parse(archConfigJson('gemma3', 512));
    const f = cfg.features;
    expect([f.normOffset, f.act, f.sandwichNorms, f.qkNorm]).toEqual([1, 'gelu_pytorch_tanh', true, true]);
    expect(f.local).toEqual({ window: 8, rope: { theta: 10000, scaling: null }, layers: [0, 2] });
    expect([cfg.ropeTheta, cfg.ropeScaling]).toEqual([1e6, { type: 'linear', factor: 8 }]);
    expect(f.attentionScale).toBeCloseTo(1 / Math.sqrt(24), 12);
    expect(f.embedScale).toBe(6.9375); // √48 = 6.928… in bf16
    expect(f.finalLogitSoftcap).toBe(30);
    expect(cfg.tieWordEmbeddings).toBe(true);
  });

  test('gemma3_text without layer_types: every sliding_window_pattern-th layer is global', () => {
    const { layer_types: _, ...raw } = archConfigJson('gemma3', 512);
    const cfg = parse({ ...raw, num_hidden_layers: 12, sliding_window_pattern: 6, torch_dtype: 'float32' });
    expect(cfg.features.local!.layers).toEqual([0, 1, 2, 3, 4, 6, 7, 8, 9, 10]);
    expect(cfg.features.embedScale).toBe(Math.fround(Math.sqrt(48)));
  });

  test("transformers 5's rope_parameters, per attention kind", () => {
    const { rope_theta: _t, rope_local_base_freq: _l, rope_scaling: _s, ...raw } = archConfigJson('gemma3', 512);
    const cfg = parse({
      ...raw,
      rope_parameters: { full_attention: { rope_type: 'linear', factor: 4, rope_theta: 500000 }, sliding_attention: { rope_type: 'default', rope_theta: 20000 } },
    });
    expect([cfg.ropeTheta, cfg.ropeScaling]).toEqual([500000, { type: 'linear', factor: 4 }]);
    expect(cfg.features.local!.rope).toEqual({ theta: 20000, scaling: null });
  });

  test('mixtral and qwen3_moe: experts, top-k, renormalisation and dense layers', () => {
    expect(parse(archConfigJson('mixtral', 512)).features.moe).toEqual({ experts: 4, topK: 2, normTopK: true, intermediateSize: 48, denseLayers: [] });
    const moe = parse(archConfigJson('qwen3_moe', 512)).features.moe;
    expect(moe).toEqual({ experts: 4, topK: 2, normTopK: true, intermediateSize: 32, denseLayers: [0] });
    expect(parse({ ...archConfigJson('qwen3_moe', 512), mlp_only_layers: [], decoder_sparse_step: 2 }).features.moe!.denseLayers).toEqual([0]);
  });

  test('refuses unsupported model types by name, with the supported list', () => {
    expect(() => parse({ ...archConfigJson('qwen3', 512), model_type: 'deepseek_v3' })).toThrow(`model_type "deepseek_v3" is not supported; supported: ${MODEL_TYPES.join(', ')}`);
    expect(() => parse({ model_type: 'gemma3', text_config: archConfigJson('gemma3', 512) })).toThrow(/multimodal Gemma3ForConditionalGeneration.*model_type "gemma3_text"/);
  });

  test('refuses fields it would silently compute wrong', () => {
    expect(() => parse({ ...archConfigJson('gemma3', 512), attn_logit_softcapping: 50 })).toThrow(/attn_logit_softcapping 50 is not supported/);
    expect(() => parse({ ...archConfigJson('gemma3', 512), hidden_activation: 'gelu' })).toThrow(/hidden_activation "gelu" is not supported/);
    expect(() => parse({ ...archConfigJson('mixtral', 512), num_experts_per_tok: 5 })).toThrow(/num_experts_per_tok 5/);
    expect(() => parse({ ...archConfigJson('qwen3', 512), rope_scaling: { rope_type: 'yarn', factor: 4 } })).toThrow(/rope_scaling.rope_type "yarn" is not supported/);
  });
});

describe('adapters', () => {
  test('MoE routers are Linears that the class name Linear never selects, but a name or regex does', () => {
    for (const [arch, router] of [['mixtral', 'block_sparse_moe.gate'], ['qwen3_moe', 'mlp.gate']] as const) {
      const cfg = parse(archConfigJson(arch, 512));
      const modules = archFor(cfg).modules(cfg);
      const name = `model.layers.1.${router}`;
      expect(modules.find((m) => m.name === name)).toMatchObject({ className: 'Linear', nameOnly: true });
      expect(matchModules(modules, ['Linear'], ['lm_head']).matched.map((m) => m.name)).not.toContain(name);
      expect(matchModules(modules, [`re:.*${router.replace('.', '\\.')}$`]).matched.map((m) => m.name)).toContain(name);
    }
  });

  test('tensor names as HF writes them', () => {
    const mixtral = parse(archConfigJson('mixtral', 512));
    expect(archFor(mixtral).layerTensors(mixtral, 0)).toEqual(expect.arrayContaining(['model.layers.0.block_sparse_moe.gate.weight', 'model.layers.0.block_sparse_moe.experts.3.w2.weight']));
    const qwen3moe = parse(archConfigJson('qwen3_moe', 512));
    const dense = archFor(qwen3moe).layerTensors(qwen3moe, 0);
    expect(dense).toContain('model.layers.0.mlp.down_proj.weight');
    expect(dense).toContain('model.layers.0.self_attn.q_norm.weight');
    expect(archFor(qwen3moe).layerTensors(qwen3moe, 1)).toContain('model.layers.1.mlp.experts.0.gate_proj.weight');
    const gemma = parse(archConfigJson('gemma3', 512));
    expect(archFor(gemma).layerTensors(gemma, 0).filter((n) => n.includes('norm'))).toEqual(
      ['input_layernorm', 'self_attn.q_norm', 'self_attn.k_norm', 'post_attention_layernorm', 'pre_feedforward_layernorm', 'post_feedforward_layernorm'].map((n) => `model.layers.0.${n}.weight`),
    );
  });
});
