import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { schemaDir } from '../../src/recipe/schemas.js';
import { STAGE_KINDS } from '../../src/stages/registry.js';
import { validateRecipeData, validateStageData } from '../../src/recipe/validate.js';

describe('validateStageData', () => {
  test('validates a stage on its own and fills its defaults', () => {
    const stage: Record<string, unknown> = { kind: 'rtn', scheme: 'W8A8' };
    expect(validateStageData('rtn', stage)).toEqual([]);
    expect(stage).toEqual({ kind: 'rtn', scheme: 'W8A8', targets: ['Linear'], ignore: ['lm_head'] });
  });

  test('reports a stage error with a path relative to the stage', () => {
    const issues = validateStageData('gptq', { kind: 'gptq', scheme: 'W4A16', block_size: 0 });
    expect(issues.map((i) => [i.code, i.path])).toEqual([['out-of-range', ['block_size']]]);
  });

  test('accepts awq without a scheme but not smoothquant with one', () => {
    expect(validateStageData('awq', { kind: 'awq' })).toEqual([]);
    expect(validateStageData('smoothquant', { kind: 'smoothquant', scheme: 'W8A8' }).map((i) => i.code)).toEqual(['unknown-property']);
  });
});

describe('validateRecipeData', () => {
  const base = () => ({ quantforge: 1, model: './m', stages: [{ kind: 'gptq', scheme: 'W4A16' }] });

  test('accepts a minimal recipe', () => {
    expect(validateRecipeData(base())).toEqual([]);
  });

  test('reports every mistake, one issue each, without anyOf or if/then noise', () => {
    const data = { ...base(), stages: [{ kind: 'rtn' }, { kind: 'gptq', scheme: 'W4A16', config_groups: { g: { targets: ['Linear'], weights: { num_bits: 4, strategy: 'group' } } } }] };
    const found = validateRecipeData(data).map((i) => [i.code, i.path.join('/')]);
    expect(found.sort()).toEqual([
      ['conflicting-properties', 'stages/1/config_groups'],
      ['missing-one-of', 'stages/0'],
      ['missing-property', 'stages/1/config_groups/g/weights'],
    ]);
  });

  test('uses the kind as discriminator: an unknown kind is one error, not one per stage schema', () => {
    const issues = validateRecipeData({ ...base(), stages: [{ kind: 'qptq', scheme: 'W4A16', block_size: 1 }] });
    expect(issues.map((i) => i.code)).toEqual(['unknown-stage-kind']);
  });

  test('input_activations may be null or quantization arguments', () => {
    const group = (ia: unknown) => ({ ...base(), stages: [{ kind: 'rtn', config_groups: { g: { targets: ['Linear'], input_activations: ia } } }] });
    expect(validateRecipeData(group(null))).toEqual([]);
    expect(validateRecipeData(group({ num_bits: 8, strategy: 'token', dynamic: true }))).toEqual([]);
    expect(validateRecipeData(group({ num_bits: 8 })).map((i) => i.message)).toEqual([
      'Missing required property "strategy" in "config_groups.g.input_activations" of stage "rtn".',
    ]);
  });
});

describe('schema files', () => {
  const files = ['recipe.schema.json', ...['stages', 'outputs'].flatMap((d) => readdirSync(join(schemaDir(), d)).map((f) => `${d}/${f}`))];

  test('there is one stage schema per stage kind', () => {
    expect(files.filter((f) => f.startsWith('stages/')).sort()).toEqual(STAGE_KINDS.map((k) => `stages/${k}.schema.json`).sort());
  });

  test('every object schema with properties forbids additional properties and requires only known ones', () => {
    const problems: string[] = [];
    const check = (node: unknown, where: string) => {
      if (typeof node !== 'object' || node === null) return;
      const schema = node as Record<string, unknown>;
      const properties = schema.properties as Record<string, unknown> | undefined;
      // conditional subschemas (if/then) add rules to an object schema that already closes it
      if (properties && schema.additionalProperties !== false && !['if', 'then', 'else'].includes(where.split('/').at(-1) ?? '')) {
        problems.push(`${where}: additionalProperties is not false`);
      }
      if (properties && Array.isArray(schema.required)) {
        for (const name of schema.required) if (!(String(name) in properties)) problems.push(`${where}: requires unknown "${String(name)}"`);
      }
      for (const [key, child] of Object.entries(schema)) check(child, `${where}/${key}`);
    };
    for (const file of files) check(JSON.parse(readFileSync(join(schemaDir(), file), 'utf8')), file);
    expect(problems).toEqual([]);
  });
});
