import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import {
  PRESET_SCHEMES,
  SchemeError,
  presetScheme,
  resolveConfigGroups,
  resolveQuantArgs,
  resolveScheme,
  toCompressedTensorsArgs,
  toCompressedTensorsScheme,
} from '../../src/quant/scheme.js';

// what compressed-tensors 0.12 dumps for these args (QuantizationArgs.model_dump())
const W4_GROUP_SYM = {
  num_bits: 4, type: 'int', symmetric: true, group_size: 128, strategy: 'group',
  block_structure: null, dynamic: false, actorder: null, observer: 'minmax', observer_kwargs: {},
};
const INT8_TOKEN_DYNAMIC = {
  num_bits: 8, type: 'int', symmetric: true, group_size: null, strategy: 'token',
  block_structure: null, dynamic: true, actorder: null, observer: null, observer_kwargs: {},
};

function reason(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof SchemeError ? e.reason : `not a SchemeError: ${String(e)}`;
  }
  return undefined;
}

describe('presets', () => {
  test('W4A16 is int4 symmetric groups of 128, weights only', () => {
    const s = presetScheme('W4A16', ['Linear']);
    expect(toCompressedTensorsArgs(s.weights!)).toEqual(W4_GROUP_SYM);
    expect(s.input_activations).toBeNull();
    expect(s.output_activations).toBeNull();
  });

  test('W4A16_ASYM differs from W4A16 only in symmetry', () => {
    const s = presetScheme('W4A16_ASYM', ['Linear']);
    expect(toCompressedTensorsArgs(s.weights!)).toEqual({ ...W4_GROUP_SYM, symmetric: false });
  });

  test('W8A16 is int8 symmetric per output channel', () => {
    const s = presetScheme('w8a16', ['Linear']);
    expect(toCompressedTensorsArgs(s.weights!)).toEqual({ ...W4_GROUP_SYM, num_bits: 8, group_size: null, strategy: 'channel' });
    expect(s.input_activations).toBeNull();
  });

  test('W8A8 adds dynamic per-token int8 input activations with no observer', () => {
    const s = presetScheme('W8A8', ['Linear']);
    expect(toCompressedTensorsArgs(s.weights!)).toEqual({ ...W4_GROUP_SYM, num_bits: 8, group_size: null, strategy: 'channel' });
    expect(toCompressedTensorsArgs(s.input_activations!)).toEqual(INT8_TOKEN_DYNAMIC);
  });

  test('W4A8 is W4A16 weights with W8A8 activations', () => {
    const s = presetScheme('W4A8', ['Linear']);
    expect(toCompressedTensorsArgs(s.weights!)).toEqual(W4_GROUP_SYM);
    expect(toCompressedTensorsArgs(s.input_activations!)).toEqual(INT8_TOKEN_DYNAMIC);
  });

  // the float presets as compressed-tensors 0.12 dumps them (MXFP4 as 0.14 does, with scale_dtype);
  // static activation ranges take the static_minmax observer of the later presets
  const FP8_TENSOR = { ...W4_GROUP_SYM, num_bits: 8, type: 'float', group_size: null, strategy: 'tensor' };
  test('FP8: static per-tensor fp8 weights and input activations', () => {
    const s = presetScheme('FP8', ['Linear']);
    expect(toCompressedTensorsArgs(s.weights!)).toEqual(FP8_TENSOR);
    expect(toCompressedTensorsArgs(s.input_activations!)).toEqual({ ...FP8_TENSOR, observer: 'static_minmax' });
  });

  test('FP8_DYNAMIC: per-channel fp8 weights, dynamic per-token fp8 activations', () => {
    const s = presetScheme('FP8_DYNAMIC', ['Linear']);
    expect(toCompressedTensorsArgs(s.weights!)).toEqual({ ...FP8_TENSOR, strategy: 'channel' });
    expect(toCompressedTensorsArgs(s.input_activations!)).toEqual({ ...INT8_TOKEN_DYNAMIC, type: 'float' });
  });

  test('FP8_BLOCK: 128 × 128 weight blocks, dynamic per-token groups of 128', () => {
    const s = presetScheme('FP8_BLOCK', ['Linear']);
    expect(toCompressedTensorsArgs(s.weights!)).toEqual({ ...FP8_TENSOR, strategy: 'block', block_structure: [128, 128] });
    expect(toCompressedTensorsArgs(s.input_activations!)).toEqual({ ...FP8_TENSOR, strategy: 'group', group_size: 128, dynamic: true, observer: null });
  });

  const FP4_NV = { ...W4_GROUP_SYM, type: 'float', group_size: 16, strategy: 'tensor_group' };
  test('NVFP4A16 and NVFP4: fp4 groups of 16 (tensor_group); NVFP4 activations dynamic "local"', () => {
    expect(toCompressedTensorsArgs(presetScheme('NVFP4A16', ['Linear']).weights!)).toEqual(FP4_NV);
    expect(presetScheme('NVFP4A16', ['Linear']).input_activations).toBeNull();
    const s = presetScheme('NVFP4', ['Linear']);
    expect(toCompressedTensorsArgs(s.weights!)).toEqual(FP4_NV);
    expect(toCompressedTensorsArgs(s.input_activations!)).toEqual({ ...FP4_NV, dynamic: 'local', observer: 'static_minmax' });
  });

  test('MXFP4A16 and MXFP4: fp4 groups of 32 with uint8 (e8m0) scales; MXFP4 activations dynamic', () => {
    const mx = { ...W4_GROUP_SYM, type: 'float', group_size: 32, scale_dtype: 'torch.uint8', zp_dtype: null };
    expect(toCompressedTensorsArgs(presetScheme('MXFP4A16', ['Linear']).weights!)).toEqual(mx);
    const s = presetScheme('MXFP4', ['Linear']);
    expect(toCompressedTensorsArgs(s.input_activations!)).toEqual({ ...mx, dynamic: true, observer: null });
  });

  test("README's scheme table lists exactly the presets", () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const table = readme.slice(readme.indexOf('### Schemes'), readme.indexOf('### Methods × schemes'));
    const rows = [...table.matchAll(/^\| `([A-Z0-9_]+)` \|/gm)].map((m) => m[1]);
    expect(rows.sort()).toEqual(Object.keys(PRESET_SCHEMES).sort());
  });

  test('an unknown preset lists the available names', () => {
    expect(() => presetScheme('W3A16', ['Linear'])).toThrow(/Unknown preset scheme name "W3A16", available names: \[W8A16, W4A16, W4A16_ASYM, W8A8/);
    expect(reason(() => presetScheme('toString', ['Linear']))).toBe('unknown-scheme');
    expect(Object.keys(PRESET_SCHEMES)).toContain('W4A16_ASYM');
  });
});

describe('resolveScheme', () => {
  test('a preset name takes the stage targets, Linear by default', () => {
    expect(resolveScheme({ scheme: 'W4A16' }).map((s) => s.targets)).toEqual([['Linear']]);
    expect(resolveScheme({ scheme: 'W4A16', targets: 're:.*mlp.*' }).map((s) => s.targets)).toEqual([['re:.*mlp.*']]);
  });

  test('a {preset: targets} map gives one group per preset, named group_<i>', () => {
    const groups = resolveConfigGroups({ scheme: { W8A8: ['re:.*self_attn.*'], W4A16: 'Linear' } });
    expect(Object.keys(groups)).toEqual(['group_0', 'group_1']);
    expect(groups.group_0?.input_activations?.strategy).toBe('token');
    expect(groups.group_1?.targets).toEqual(['Linear']);
  });

  test('config_groups fill every omitted field with compressed-tensors defaults', () => {
    const groups = resolveConfigGroups({
      config_groups: { attn: { targets: ['Linear'], weights: { num_bits: 4, group_size: 64, symmetric: false, actorder: 'static' } } },
    });
    expect(toCompressedTensorsScheme(groups.attn!, 'pack-quantized')).toEqual({
      targets: ['Linear'],
      weights: { ...W4_GROUP_SYM, group_size: 64, symmetric: false, actorder: 'static' },
      input_activations: null,
      output_activations: null,
      format: 'pack-quantized',
    });
  });

  test('the stage observer replaces the weight observer of every group', () => {
    const [s] = resolveScheme({ scheme: 'W8A8', observer: 'mse' });
    expect(s?.weights?.observer).toBe('mse');
    expect(s?.input_activations?.observer).toBeNull();
  });

  test('neither scheme nor config_groups resolves to no schemes; both is an error', () => {
    expect(resolveScheme({})).toEqual([]);
    expect(reason(() => resolveScheme({ scheme: 'W4A16', config_groups: {} }))).toBe('scheme-conflict');
  });

  test('config groups without targets or with output activations are refused', () => {
    expect(reason(() => resolveScheme({ config_groups: { g: { targets: [] } } }))).toBe('invalid-quant-args');
    expect(reason(() => resolveScheme({ config_groups: { g: { targets: 'Linear', output_activations: { num_bits: 8 } } } }))).toBe('unsupported-quant-args');
    expect(reason(() => resolveScheme({ config_groups: { g: { targets: 'Linear', input_activations: { dynamic: true, strategy: 'token', actorder: 'static' } } } }))).toBe('invalid-quant-args');
  });
});

describe('resolveQuantArgs', () => {
  test('infers the strategy from group_size as compressed-tensors does', () => {
    expect(resolveQuantArgs({}).strategy).toBe('tensor');
    expect(resolveQuantArgs({ group_size: 32 }).strategy).toBe('group');
    expect(resolveQuantArgs({ group_size: -1 }).strategy).toBe('channel');
    expect(reason(() => resolveQuantArgs({ group_size: -2 }))).toBe('invalid-quant-args');
  });

  test('defaults to 8 bits, int, symmetric, static with the minmax observer', () => {
    expect(toCompressedTensorsArgs(resolveQuantArgs({}))).toEqual({ ...W4_GROUP_SYM, num_bits: 8, group_size: null, strategy: 'tensor' });
  });

  test('maps actorder aliases and booleans', () => {
    expect(resolveQuantArgs({ group_size: 128, actorder: 'weight' }).actorder).toBe('static');
    expect(resolveQuantArgs({ group_size: 128, actorder: 'dynamic' }).actorder).toBe('group');
    expect(resolveQuantArgs({ group_size: 128, actorder: true }).actorder).toBe('group');
    expect(resolveQuantArgs({ group_size: 128, actorder: false }).actorder).toBeNull();
    expect(() => resolveQuantArgs({ group_size: 128, actorder: 'random' })).toThrow(/not one of: static, weight, group, dynamic/);
  });

  test('rejects the combinations compressed-tensors rejects', () => {
    expect(reason(() => resolveQuantArgs({ strategy: 'group' }))).toBe('invalid-quant-args');
    expect(reason(() => resolveQuantArgs({ strategy: 'channel', group_size: 128 }))).toBe('invalid-quant-args');
    expect(reason(() => resolveQuantArgs({ strategy: 'token' }))).toBe('invalid-quant-args');
    expect(reason(() => resolveQuantArgs({ strategy: 'channel', actorder: 'static' }))).toBe('invalid-quant-args');
    expect(reason(() => resolveQuantArgs({ strategy: 'channel', dynamic: true }))).toBe('invalid-quant-args');
  });

  test('rejects what quantforge does not implement, naming the allowed set', () => {
    expect(() => resolveQuantArgs({ type: 'bfloat' })).toThrow(/type "bfloat" is not supported; expected "int" or "float"/);
    expect(() => resolveQuantArgs({ type: 'float', num_bits: 6 })).toThrow(/expected 8 \(fp8 e4m3\) or 4 \(fp4 e2m1\)/);
    expect(() => resolveQuantArgs({ strategy: 'tensor_group', group_size: 16 })).toThrow(/not supported for int values; expected one of: tensor, channel, group, token/);
    expect(() => resolveQuantArgs({ strategy: 'blocks' })).toThrow(/expected one of: tensor, channel, group, block, token, tensor_group/);
    expect(reason(() => resolveQuantArgs({ num_bits: 16 }))).toBe('unsupported-quant-args');
    expect(reason(() => resolveQuantArgs({ observer: 'histogram' }))).toBe('invalid-quant-args');
  });

  test('float args: fp8 and fp4 strategies, symmetric only, MX groups of 32, block_structure with block', () => {
    expect(resolveQuantArgs({ type: 'float', strategy: 'channel' }).num_bits).toBe(8);
    expect(reason(() => resolveQuantArgs({ type: 'float', symmetric: false }))).toBe('unsupported-quant-args');
    expect(reason(() => resolveQuantArgs({ type: 'float', num_bits: 4, strategy: 'channel' }))).toBe('unsupported-quant-args');
    expect(() => resolveQuantArgs({ type: 'float', num_bits: 4, group_size: 16 })).toThrow(/MXFP4, whose e8m0 scales cover 32 values; found group_size 16/);
    expect(reason(() => resolveQuantArgs({ type: 'float', strategy: 'block' }))).toBe('invalid-quant-args');
    expect(reason(() => resolveQuantArgs({ type: 'float', strategy: 'channel', block_structure: [2, 2] }))).toBe('invalid-quant-args');
    expect(reason(() => resolveQuantArgs({ type: 'float', num_bits: 4, strategy: 'group', group_size: 32, dynamic: 'local' }))).toBe('invalid-quant-args');
  });

  test('input activations: only the quantizations quantforge runs', () => {
    const group = (input_activations: object) => () => resolveScheme({ config_groups: { g: { targets: 'Linear', weights: { num_bits: 8 }, input_activations } } });
    expect(reason(group({ num_bits: 8, type: 'float', strategy: 'tensor' }))).toBeUndefined();
    expect(reason(group({ num_bits: 8, strategy: 'tensor' }))).toBe('unsupported-quant-args');
    expect(() => group({ num_bits: 8, type: 'float', strategy: 'tensor', dynamic: true })()).toThrow(/expected dynamic "token"/);
  });

  test('dynamic args drop their observer', () => {
    expect(resolveQuantArgs({ strategy: 'token', dynamic: true, observer: 'minmax' }).observer).toBeNull();
  });
});
