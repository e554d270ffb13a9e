import { describe, expect, test } from 'vitest';
import type { Diagnostic, SourceFile } from '../../src/diag/diagnostic.js';
import { diagnosticToJson, displayPath, formatLocation, printDiagnostic } from '../../src/diag/print.js';

const recipe: SourceFile = {
  path: '/work/proj/recipes/gptq-w4a16.yaml',
  contents: 'quantforge: 1\nstages:\n  - kind: gptq\n    groupsize: 128\n',
};
const at = (text: string, length = text.length) => ({ file: recipe, range: { offset: recipe.contents.indexOf(text), length } });

const unknownKey: Diagnostic = {
  severity: 'error',
  code: 'unknown-property',
  message: 'Unknown property "groupsize" in stage "gptq". Did you mean "group_size"?',
  location: at('groupsize'),
};

describe('printDiagnostic', () => {
  test('prints the location relative to cwd, the line, and a squiggle under the range', () => {
    expect('\n' + printDiagnostic(unknownKey, { cwd: '/work/proj' })).toMatchInlineSnapshot(`
      "
      ❌ recipes/gptq-w4a16.yaml:4:5 Unknown property "groupsize" in stage "gptq". Did you mean "group_size"?
              groupsize: 128
              ~~~~~~~~~
      "
    `);
  });

  test('clips a multi-line range to its first line and prints related locations indented', () => {
    const diagnostic: Diagnostic = {
      severity: 'warning',
      code: 'example',
      message: 'Something about this stage.',
      location: at('kind: gptq\n    groupsize: 128'),
      related: [{ message: 'see here', location: at('quantforge') }],
    };
    expect('\n' + printDiagnostic(diagnostic, { cwd: '/work/proj' })).toMatchInlineSnapshot(`
      "
      ⚠️ recipes/gptq-w4a16.yaml:3:5 Something about this stage.
            - kind: gptq
              ~~~~~~~~~~
          recipes/gptq-w4a16.yaml:1:1 see here
              quantforge: 1
              ~~~~~~~~~~
      "
    `);
  });

  test('draws one mark for an empty range so the column stays visible', () => {
    const empty: Diagnostic = { ...unknownKey, location: { file: recipe, range: { offset: recipe.contents.indexOf('128'), length: 0 } } };
    expect(printDiagnostic(empty, { cwd: '/work/proj' }).split('\n')[2]).toBe(' '.repeat(4 + 15) + '~');
  });

  test('prints a synthetic source such as --set by its label', () => {
    const file: SourceFile = { path: '--set', contents: 'stages[9].iters=50' };
    const d: Diagnostic = { ...unknownKey, message: 'No item [9] in "stages".', location: { file, range: { offset: 6, length: 3 } } };
    expect('\n' + printDiagnostic(d)).toMatchInlineSnapshot(`
      "
      ❌ --set:1:7 No item [9] in "stages".
          stages[9].iters=50
                ~~~
      "
    `);
  });

  test('adds ANSI colour only when asked', () => {
    expect(printDiagnostic(unknownKey, { cwd: '/work/proj' })).not.toContain('\x1b[');
    expect(printDiagnostic(unknownKey, { cwd: '/work/proj', color: true })).toContain('\x1b[31m~~~~~~~~~\x1b[39m');
  });
});

describe('formatLocation and displayPath', () => {
  test('give 1-based line and column, relative paths for files under cwd', () => {
    expect(formatLocation(at('128'), '/work/proj')).toBe('recipes/gptq-w4a16.yaml:4:16');
    expect(formatLocation(at('quantforge'), '/work/other')).toBe('../proj/recipes/gptq-w4a16.yaml:1:1');
    expect(displayPath({ path: '--set', contents: '' }, '/work/proj')).toBe('--set');
  });
});

describe('diagnosticToJson', () => {
  test('gives plain file:line:col locations, related included', () => {
    const d: Diagnostic = { ...unknownKey, related: [{ message: 'here', location: at('kind') }] };
    expect(diagnosticToJson(d, { cwd: '/work/proj' })).toEqual({
      severity: 'error',
      code: 'unknown-property',
      message: unknownKey.message,
      location: 'recipes/gptq-w4a16.yaml:4:5',
      related: [{ message: 'here', location: 'recipes/gptq-w4a16.yaml:3:5' }],
    });
  });

  test('omits related when there is none', () => {
    expect(Object.keys(diagnosticToJson(unknownKey))).toEqual(['severity', 'code', 'message', 'location']);
  });
});
