import { describe, expect, test } from 'vitest';
import { presetScheme } from '../../src/quant/scheme.js';
import { TargetError, assignSchemes, matchModules, matchesName, type ModuleRef } from '../../src/algo/targets.js';

const linear = (name: string): ModuleRef => ({ name, className: 'Linear' });
const MODULES: ModuleRef[] = [
  { name: 'model.embed_tokens', className: 'Embedding' },
  linear('model.layers.0.self_attn.q_proj'),
  linear('model.layers.0.self_attn.o_proj'),
  linear('model.layers.0.mlp.down_proj'),
  { name: 'model.layers.0.input_layernorm', className: 'LlamaRMSNorm' },
  linear('model.layers.1.self_attn.q_proj'),
  linear('model.layers.1.mlp.down_proj'),
  linear('lm_head'),
];
const names = (ms: readonly ModuleRef[]) => ms.map((m) => m.name);

describe('matchesName', () => {
  test('re: patterns are anchored at the start only, like Python re.match', () => {
    expect(matchesName('model.layers.0.mlp.down_proj', 're:.*down_proj')).toBe(true);
    expect(matchesName('model.layers.0.mlp.down_proj', 're:down_proj')).toBe(false);
    expect(matchesName('model.layers.0.mlp.down_proj', 're:model.layers.0')).toBe(true);
    expect(matchesName('model.layers.0.mlp.down_proj_x', 're:.*down_proj')).toBe(true);
    expect(matchesName('model.layers.0.mlp.down_proj_x', 're:.*down_proj$')).toBe(false);
  });

  test('plain patterns must equal the name', () => {
    expect(matchesName('lm_head', 'lm_head')).toBe(true);
    expect(matchesName('model.lm_head_2', 'lm_head')).toBe(false);
  });

  test('Python named groups are accepted', () => {
    expect(matchesName('model.layers.3.mlp.up_proj', 're:model\\.layers\\.(?P<n>\\d+)\\.mlp')).toBe(true);
  });

  test('an invalid regex is a typed error naming the pattern', () => {
    expect(() => matchesName('x', 're:(unclosed')).toThrow(TargetError);
    expect(() => matchesName('x', 're:(unclosed')).toThrow(/pattern "re:\(unclosed" is not a valid regular expression/);
  });
});

describe('matchModules', () => {
  test('Linear selects every Linear but lm_head', () => {
    const r = matchModules(MODULES, ['Linear']);
    expect(names(r.matched)).toEqual(names(MODULES.filter((m) => m.className === 'Linear' && m.name !== 'lm_head')));
    expect(r.unmatchedTargets).toEqual([]);
  });

  test('lm_head is selected when a target names it or a regex matches it', () => {
    expect(names(matchModules(MODULES, ['Linear', 'lm_head']).matched)).toContain('lm_head');
    expect(names(matchModules(MODULES, ['re:lm_.*']).matched)).toEqual(['lm_head']);
  });

  test('ignore removes modules by exact name, regex or class', () => {
    const r = matchModules(MODULES, ['Linear'], ['model.layers.0.self_attn.q_proj', 're:.*down_proj', 'Embedding']);
    expect(names(r.matched)).toEqual(['model.layers.0.self_attn.o_proj', 'model.layers.1.self_attn.q_proj']);
    expect(r.unmatchedIgnore).toEqual([]);
  });

  test('ignore: [lm_head] is not reported as unused even though Linear never selects lm_head', () => {
    expect(matchModules(MODULES, ['Linear'], ['lm_head']).unmatchedIgnore).toEqual([]);
  });

  test('patterns that match nothing are reported for warnings', () => {
    const r = matchModules(MODULES, ['Linear', 're:.*gate_proj', 'Conv2d'], ['re:.*k_proj', 'model.layers.0.mlp.down_proj']);
    expect(r.unmatchedTargets).toEqual(['re:.*gate_proj', 'Conv2d']);
    expect(r.unmatchedIgnore).toEqual(['re:.*k_proj']);
  });

  test('a class target also matches base class names', () => {
    const custom: ModuleRef = { name: 'x.proj', className: 'QuantLinear', baseClassNames: ['Linear'] };
    expect(names(matchModules([custom], ['Linear']).matched)).toEqual(['x.proj']);
  });

  test('a target that only reaches lm_head through its class counts as unmatched', () => {
    expect(matchModules([linear('lm_head')], ['Linear']).unmatchedTargets).toEqual(['Linear']);
  });
});

describe('assignSchemes', () => {
  test('the most specific target decides: exact name, then regex, then class', () => {
    const w4 = presetScheme('W4A16', ['Linear']);
    const w8 = presetScheme('W8A16', ['re:.*down_proj']);
    const w8a8 = presetScheme('W8A8', ['model.layers.1.mlp.down_proj']);
    const r = assignSchemes(MODULES, [w4, w8, w8a8], ['model.layers.0.self_attn.o_proj']);
    const by = Object.fromEntries(r.assigned.map((a) => [a.module.name, a.target]));
    expect(by).toEqual({
      'model.layers.0.self_attn.q_proj': 'Linear',
      'model.layers.0.mlp.down_proj': 're:.*down_proj',
      'model.layers.1.self_attn.q_proj': 'Linear',
      'model.layers.1.mlp.down_proj': 'model.layers.1.mlp.down_proj',
    });
    expect(r.assigned.find((a) => a.module.name === 'model.layers.1.mlp.down_proj')?.scheme).toBe(w8a8);
  });
});
