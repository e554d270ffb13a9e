// The precompiled validators (schema/validators.generated.cjs) against the schema files: the committed code is
// what the schemas generate now, and it agrees with ajv compiled at run time on validity and filled defaults
// for every shipped recipe and every invalid-recipe fixture.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { PRECOMPILED_FILE, quickRecipeValidator, recipeValidator, schemaDir } from '../../src/recipe/schemas.js';
import { generateValidators } from '../../src/recipe/validators-codegen.js';

const REPO = resolve(import.meta.dirname, '../..');
const yamls = (dir: string): string[] => readdirSync(join(REPO, dir)).filter((f) => f.endsWith('.yaml')).map((f) => join(REPO, dir, f));
const examples = readdirSync(join(REPO, 'examples')).map((d) => join(REPO, 'examples', d, 'recipe.yaml')).filter((f) => existsSync(f));

describe('precompiled validators', () => {
  test('schema/validators.generated.cjs is what the schema files generate (run `npm run build` after editing a schema)', () => {
    expect(readFileSync(join(schemaDir(), PRECOMPILED_FILE), 'utf8') === generateValidators()).toBe(true);
  });

  test('agree with the run-time compiled schemas on validity and defaults', () => {
    const files = [...yamls('recipes'), ...examples, ...['valid', 'plan', 'invalid'].flatMap((d) => yamls(`test/fixtures/recipes/${d}`))];
    let valid = 0;
    for (const file of files) {
      let data: unknown;
      try {
        data = parse(readFileSync(file, 'utf8'));
      } catch {
        continue;
      }
      const [a, b] = [structuredClone(data), structuredClone(data)];
      const quick = quickRecipeValidator()(a);
      expect(quick, file).toBe(recipeValidator()(b));
      if (quick) {
        valid++;
        expect(a, file).toEqual(b);
      }
    }
    expect(valid).toBeGreaterThan(5);
  });
});
