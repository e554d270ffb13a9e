// Every shipped recipe and example validates and plans (STYLE.md §8).

import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { compilePlan } from '../src/plan/compile.js';
import { loadRecipe } from '../src/recipe/load.js';
import { applyAssignments } from '../src/recipe/load.js';
import { haveShared } from './e2e/shared.js';

const root = join(import.meta.dirname, '..');
const recipes = [
  ...readdirSync(join(root, 'recipes')).filter((f) => f.endsWith('.yaml')).map((f) => join(root, 'recipes', f)),
  ...readdirSync(join(root, 'examples')).map((d) => join(root, 'examples', d, 'recipe.yaml')).filter(existsSync),
];

describe('shipped recipes', () => {
  test('there are recipes for every method', () => {
    const names = recipes.map((r) => r.split('/').slice(-2).join('/'));
    for (const n of ['recipes/gptq-w4a16.yaml', 'recipes/simple-ptq-w8a8.yaml', 'recipes/smoothquant-w8a8.yaml', 'recipes/awq-w4a16-asym.yaml', 'recipes/autoround-w4a16.yaml', 'recipes/rtn-w8a8.yaml', 'quickstart/recipe.yaml']) {
      expect(names).toContain(n);
    }
  });
  for (const path of recipes) {
    const usesShared = !path.includes('/examples/');
    test.skipIf(usesShared && !haveShared && process.env['QUANTFORGE_REQUIRE_SHARED'] !== '1')(`${path.slice(root.length + 1)} validates and plans`, () => {
      const loaded = loadRecipe(path);
      if (!loaded.ok) throw new Error(loaded.error.map((d) => d.message).join('\n'));
      const variants = loaded.value.sweep.length > 0 ? loaded.value.sweep[0]!.assignments.map((a) => applyAssignments(loaded.value, [a])) : [{ ok: true as const, value: loaded.value }];
      for (const v of variants) {
        if (!v.ok) throw new Error(v.error.map((d) => d.message).join('\n'));
        const plan = compilePlan(v.value);
        if (!plan.ok) throw new Error(plan.error.map((d) => d.message).join('\n'));
        expect(plan.value.plan.steps.length).toBeGreaterThan(3);
        expect(plan.value.warnings.filter((w) => w.severity === 'error')).toEqual([]);
      }
    });
  }
});
