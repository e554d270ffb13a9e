import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { CACHE_FORMAT, canonicalJson, computeKey, explainChange, type Digest, type KeyRecord } from '../../src/cache/key.js';

const digest = (c: string) => c.repeat(64) as Digest;

function record(overrides: Partial<KeyRecord> = {}): KeyRecord {
  return {
    cacheFormat: CACHE_FORMAT,
    kind: 'gptq',
    version: 1,
    params: { iters: 200, scheme: 'W4A16', ignore: ['lm_head'], calib: { samples: 128, seed: 0 } },
    inputs: { 'stage1.gptq/layer.2': digest('a'), 'embed/calibration': digest('b') },
    files: { 'model/model.safetensors': digest('c') },
    tools: { quantforge: '0.1.0', 'onnxruntime-node': '1.30.0' },
    ...overrides,
  };
}

describe('canonicalJson', () => {
  test('sorts object keys at every depth and writes no whitespace', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, 2], c: 'x' } })).toBe('{"a":{"c":"x","d":[1,2]},"b":1}');
  });

  test('sorts keys by code unit, not by locale', () => {
    expect(canonicalJson({ b: 0, B: 0, a: 0, _: 0 })).toBe('{"B":0,"_":0,"a":0,"b":0}');
  });

  test('gives the same text for the same data in any key order', () => {
    expect(canonicalJson({ x: 1, y: [{ q: 1, p: 2 }] })).toBe(canonicalJson({ y: [{ p: 2, q: 1 }], x: 1 }));
  });

  test('keeps array order, since it is meaningful', () => {
    expect(canonicalJson([2, 1])).not.toBe(canonicalJson([1, 2]));
  });

  test('writes numbers as JSON does and drops undefined fields', () => {
    expect(canonicalJson({ a: 1e21, b: 0.1, c: -0, d: undefined })).toBe('{"a":1e+21,"b":0.1,"c":0}');
  });

  test.each([
    ['NaN', { lr: Number.NaN }],
    ['Infinity', { lr: Number.POSITIVE_INFINITY }],
    ['a bigint', { n: 1n }],
    ['undefined inside an array', { a: [1, undefined] }],
    ['a Date', { when: new Date(0) }],
    ['a function', { f: () => 1 }],
  ])('refuses %s instead of mapping it to null', (_name, value) => {
    expect(() => canonicalJson(value)).toThrow(/cannot put .* into a cache key/);
  });

  test('names where the value that is not JSON sits', () => {
    expect(() => canonicalJson({ modules: { q: { weights: [1, { lr: Number.NaN }] } } })).toThrow('cannot put NaN at modules.q.weights[1].lr into a cache key');
  });

  test('is JSON.stringify with the keys of every object in code-unit order (random JSON)', () => {
    // (an object rebuilt in sorted order would not do: JSON.stringify puts integer-like keys first)
    const reference = (v: unknown): string => {
      if (Array.isArray(v)) return `[${v.map(reference).join(',')}]`;
      if (v === null || typeof v !== 'object') return JSON.stringify(v);
      const keys = Object.keys(v).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      return `{${keys.map((k) => `${JSON.stringify(k)}:${reference((v as Record<string, unknown>)[k])}`).join(',')}}`;
    };
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        expect(canonicalJson(v)).toBe(reference(v));
      }),
      { numRuns: 300, seed: 17 },
    );
  });
});

describe('computeKey', () => {
  test('is the sha256 of the canonical JSON of the record', () => {
    const r = record();
    expect(computeKey(r)).toBe(createHash('sha256').update(canonicalJson(r)).digest('hex'));
    expect(computeKey(r)).toMatch(/^[0-9a-f]{64}$/);
  });

  test('does not depend on the order of fields, params, inputs or files', () => {
    const r = record();
    const shuffled: KeyRecord = {
      tools: { 'onnxruntime-node': '1.30.0', quantforge: '0.1.0' },
      files: r.files,
      inputs: { 'embed/calibration': digest('b'), 'stage1.gptq/layer.2': digest('a') },
      params: { calib: { seed: 0, samples: 128 }, ignore: ['lm_head'], scheme: 'W4A16', iters: 200 },
      version: 1,
      kind: 'gptq',
      cacheFormat: CACHE_FORMAT,
    };
    expect(computeKey(shuffled)).toBe(computeKey(r));
  });

  test.each<[string, Partial<KeyRecord>]>([
    ['cache format', { cacheFormat: CACHE_FORMAT + 1 }],
    ['kind', { kind: 'rtn' }],
    ['version', { version: 2 }],
    ['a param', { params: { iters: 50, scheme: 'W4A16', ignore: ['lm_head'], calib: { samples: 128, seed: 0 } } }],
    ['a seed', { params: { iters: 200, scheme: 'W4A16', ignore: ['lm_head'], calib: { samples: 128, seed: 1 } } }],
    ['an input key', { inputs: { 'stage1.gptq/layer.2': digest('d'), 'embed/calibration': digest('b') } }],
    ['a file digest', { files: { 'model/model.safetensors': digest('e') } }],
    ['a tool version', { tools: { quantforge: '0.1.0', 'onnxruntime-node': '1.31.0' } }],
    ['the device', { device: 'cuda' }],
  ])('changes when the %s changes', (_what, change) => {
    expect(computeKey(record(change))).not.toBe(computeKey(record()));
  });
});

describe('explainChange', () => {
  test('says new when there is no previous record', () => {
    expect(explainChange(undefined, record())).toBe('new');
  });

  test('says unchanged for equal records', () => {
    expect(explainChange(record(), record())).toBe('unchanged');
  });

  test('names a changed param with its old and new value', () => {
    const next = record({ params: { ...(record().params as object), iters: 50 } });
    expect(explainChange(record(), next)).toBe('param changed: iters 200 → 50');
  });

  test('names nested, added and removed params by path', () => {
    const next = record({ params: { iters: 200, scheme: 'W4A16', ignore: ['lm_head', 'x'], calib: { samples: 64, seed: 0 }, lr: 0.01 } });
    expect(explainChange(record(), next)).toBe(
      'param changed: calib.samples 128 → 64, ignore ["lm_head"] → ["lm_head","x"], lr (unset) → 0.01',
    );
  });

  test('names a changed input step and a changed source file by role', () => {
    const next = record({
      inputs: { 'stage1.gptq/layer.2': digest('d'), 'embed/calibration': digest('b') },
      files: { 'model/model.safetensors': digest('f') },
    });
    expect(explainChange(record(), next)).toBe('input changed: stage1.gptq/layer.2; file changed: model/model.safetensors');
  });

  test('reports version and tool changes before params', () => {
    const next = record({
      version: 3,
      tools: { quantforge: '0.1.0', 'onnxruntime-node': '1.31.0' },
      params: { ...(record().params as object), iters: 50 },
    });
    expect(explainChange(record(), next)).toBe(
      'version changed: 1 → 3; tool changed: onnxruntime-node 1.30.0 → 1.31.0; param changed: iters 200 → 50',
    );
  });

  test('shortens long values so the reason stays one line', () => {
    const long = Array.from({ length: 30 }, (_, i) => `model.layers.${i}.mlp`);
    const reason = explainChange(record(), record({ params: { ...(record().params as object), ignore: long } }));
    expect(reason).toMatch(/^param changed: ignore \["lm_head"\] → \["model\.layers\.0\.mlp",.*\.\.\.$/);
    expect(reason.length).toBeLessThan(100);
  });

  test('reports added and removed inputs, and the device', () => {
    const next = record({ inputs: { 'embed/calibration': digest('b'), 'tokenize/calibration': digest('9') }, device: 'cuda' });
    expect(explainChange(record(), next)).toBe(
      'device changed: (any) → cuda; input added: tokenize/calibration; input removed: stage1.gptq/layer.2',
    );
  });

  test('lists at most three changes of one category', () => {
    const before = record({ params: { a: 1, b: 1, c: 1, d: 1, e: 1 } });
    const after = record({ params: { a: 2, b: 2, c: 2, d: 2, e: 2 } });
    expect(explainChange(before, after)).toBe('param changed: a 1 → 2, b 1 → 2, c 1 → 2, +2 more');
  });
});
