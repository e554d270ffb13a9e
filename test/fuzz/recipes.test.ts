// Fuzzing recipe validation (targets/recipes.ts): mutated shipped recipes end in diagnostics, never a throw;
// the counterexamples fuzzing found are replayed as named regressions.

import { describe, expect, test } from 'vitest';
import { formatOutcomes, runFuzz, runOnce } from './harness.js';
import { recipesTarget, type RecipeCase } from './targets/recipes.js';

describe('fuzz: recipes', () => {
  test('every mutated recipe validates to a plan or to diagnostics inside the file', async () => {
    const report = await runFuzz(recipesTarget);
    console.log(`${report.target}: ${report.runs} cases in ${report.seconds.toFixed(1)} s: ${formatOutcomes(report.outcomes)}`);
    expect(report.outcomes.get('ok') ?? 0).toBeGreaterThan(0);
    // every named error is a malformed input or recipe: the CLI exits 2 for it, never 1 (a failed step)
    expect(report.exits.get(1) ?? 0).toBe(0);
  });
});

// counterexamples fuzzing found (seed 20250015), shrunk by fast-check, each fixed in src
const REGRESSIONS: Record<string, { input: RecipeCase; outcome: string }> = {
  // yaml's toJS threw ReferenceError("Unresolved alias") out of loadRecipe: `validate` crashed instead of
  // pointing at the alias
  'a merge key with an alias that has no anchor (path 6)': {
    input: { recipe: 0, mutations: [{ kind: 'merge-key', line: 0 }], sets: [] },
    outcome: 'yaml-unresolved-alias',
  },
  // an alias bomb threw ReferenceError("Excessive alias count …") the same way
  'an alias bomb above the recipe': {
    input: { recipe: 0, mutations: [{ kind: 'alias-bomb', levels: 4 }], sets: [] },
    outcome: 'yaml-alias-limit',
  },
  // lineAt() found the newline at offset 0 for a diagnostic at offset 0 of a file starting with a newline:
  // printing threw RangeError("Invalid count value: -1"), so `quantforge validate` exited 1 with that text
  'an empty recipe of one newline, with --set (path 27:0:2:1:1:1:1)': {
    input: { recipe: 0, mutations: [{ kind: 'truncate', at: 0 }, { kind: 'duplicate-line', line: 0 }], sets: ['stages[0].scheme=W4A16'] },
    outcome: 'missing-property',
  },
};

describe('fuzz regressions: recipes', () => {
  for (const [name, { input, outcome }] of Object.entries(REGRESSIONS)) {
    test(name, async () => {
      expect(await runOnce(recipesTarget, input)).toBe(outcome);
    });
  }
});
