import { describe, expect, test } from 'vitest';
import { parseDocument } from 'yaml';
import { printDiagnostics } from '../../src/diag/print.js';
import { applyAssignment, parseOverride, splitValues } from '../../src/recipe/overrides.js';
import { parseOverridePath } from '../../src/recipe/override-path.js';
import { formatPath } from '../../src/recipe/json-path.js';

function values(text: string): unknown[] {
  const result = parseOverride(text);
  if (!result.ok) throw new Error(printDiagnostics(result.error));
  return [...result.value.values];
}

function failure(text: string): string {
  const result = parseOverride(text);
  if (result.ok) throw new Error(`${text} parsed`);
  return '\n' + printDiagnostics(result.error);
}

describe('parseOverride', () => {
  test('parses paths with names and indices', () => {
    const result = parseOverride('stages[1].config_groups.group_0.targets=[Linear]');
    expect(result.ok && result.value.path).toEqual(['stages', 1, 'config_groups', 'group_0', 'targets']);
    expect(result.ok && result.value.key).toBe('stages[1].config_groups.group_0.targets');
  });

  test('parses values as YAML scalars', () => {
    expect(values('a=50')).toEqual([50]);
    expect(values('a=0.5')).toEqual([0.5]);
    expect(values('a=true')).toEqual([true]);
    expect(values('a=null')).toEqual([null]);
    expect(values('a=W8A8')).toEqual(['W8A8']);
    expect(values('a=model:calib.txt')).toEqual(['model:calib.txt']);
    expect(values('a="50"')).toEqual(['50']);
  });

  test('splits several values on commas outside brackets and quotes', () => {
    expect(values('stages[0].smoothing_strength=0.5,0.65,0.8')).toEqual([0.5, 0.65, 0.8]);
    expect(values('a=[lm_head, re:.*down_proj]')).toEqual([['lm_head', 're:.*down_proj']]);
    expect(values('a=[a],[b,c]')).toEqual([['a'], ['b', 'c']]);
    expect(values('a="x,y",z')).toEqual(['x,y', 'z']);
    expect(values('a={x: 1, y: 2}')).toEqual([{ x: 1, y: 2 }]);
  });

  test('records where each value is written', () => {
    const result = parseOverride('a.b=1, 22');
    const offsets = result.ok ? result.value.assignments.map((a) => a.site.value.range) : [];
    expect(offsets).toEqual([
      { offset: 4, length: 1 },
      { offset: 7, length: 2 },
    ]);
  });

  test('rejects a missing "=" and a missing value', () => {
    expect(failure('stages[0].iters')).toMatchInlineSnapshot(`
      "
      ❌ --set:1:1 Missing "=" in "stages[0].iters": expected path=value, as in stages[0].iters=50.
          stages[0].iters
          ~~~~~~~~~~~~~~~
      "
    `);
    expect(failure('stages[0].iters=1,')).toMatchInlineSnapshot(`
      "
      ❌ --set:1:19 Missing value: expected a YAML value such as 50, true, null, W8A8 or [a, b].
          stages[0].iters=1,
                            ~
      "
    `);
  });

  test('rejects malformed paths at the offending character', () => {
    expect(failure('stages[x].iters=1')).toMatchInlineSnapshot(`
      "
      ❌ --set:1:7 Invalid index in path "stages[x].iters": expected [<integer>] after a name, as in stages[0].
          stages[x].iters=1
                ~~~~~~~~~
      "
    `);
    expect(failure('stages[0].=1')).toMatchInlineSnapshot(`
      "
      ❌ --set:1:10 Missing property name after "." in path "stages[0].".
          stages[0].=1
                   ~
      "
    `);
    expect(failure('sweep.x=1')).toMatchInlineSnapshot(`
      "
      ❌ --set:1:1 The sweep block cannot be set with --set: give several comma-separated values to sweep a parameter.
          sweep.x=1
          ~~~~~~~
      "
    `);
  });
});

describe('parseOverridePath', () => {
  test('round-trips through formatPath', () => {
    const file = { path: '--set', contents: '' };
    for (const text of ['model', 'stages[0].iters', 'evaluate.perplexity.max_windows', 'a[1][2].b-c']) {
      const result = parseOverridePath(text, file);
      expect(result.ok && formatPath(result.value.path)).toBe(text);
    }
  });

  test('locates each segment, offset by where the path sits', () => {
    const file = { path: 'recipe.yaml', contents: '' };
    const result = parseOverridePath('stages[1].iters', file, 10);
    expect(result.ok && result.value.segments.map((s) => s.range)).toEqual([
      { offset: 10, length: 6 },
      { offset: 16, length: 3 },
      { offset: 20, length: 5 },
    ]);
  });
});

describe('splitValues', () => {
  test('trims around commas and keeps offsets into the text', () => {
    expect(splitValues('k= a , [b, c]', 2)).toEqual([
      { text: 'a', offset: 3 },
      { text: '[b, c]', offset: 7 },
    ]);
  });
});

describe('applyAssignment', () => {
  const site = { segments: [], value: { file: { path: '--set', contents: 'x' }, range: { offset: 0, length: 1 } } };

  test('replaces a value and leaves the rest of the document with its ranges', () => {
    const doc = parseDocument('a:\n  b: 1\n  c: 2\n');
    expect(applyAssignment(doc, { path: ['a', 'b'], value: [1, 2], site })).toBeUndefined();
    expect(doc.toJS()).toEqual({ a: { b: [1, 2], c: 2 } });
    expect((doc.getIn(['a', 'c'], true) as { range: number[] }).range[0]).toBe(15);
  });

  test('creates missing maps, including under an empty value', () => {
    const doc = parseDocument('a:\n');
    expect(applyAssignment(doc, { path: ['a', 'b', 'c'], value: 1, site })).toBeUndefined();
    expect(doc.toJS()).toEqual({ a: { b: { c: 1 } } });
  });

  test('refuses an index past the end, a key on a list and a key under a scalar', () => {
    const doc = parseDocument('s: [x, y]\nm: ./model\n');
    const codes = [
      applyAssignment(doc, { path: ['s', 2], value: 1, site }),
      applyAssignment(doc, { path: ['s', 'k'], value: 1, site }),
      applyAssignment(doc, { path: ['m', 'example'], value: 1, site }),
    ].map((d) => d?.message);
    expect(codes).toEqual([
      'No item [2] in "s": it has 2 items, so the index must be 0 to 1.',
      '"s" is a list: expected an index such as s[0], found "k".',
      '"m" is a string, so it has no property "example".',
    ]);
    expect(doc.toJS()).toEqual({ s: ['x', 'y'], m: './model' });
  });
});
