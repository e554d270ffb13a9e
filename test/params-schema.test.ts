// Each stage kind and output format declares its params once, in TypeScript (src/stages/<kind>.ts,
// src/outputs/<format>/output.ts), and the JSON Schema validates them (schema/stages/, schema/outputs/). The
// two must agree: the same property names, and a property the type always has is one the schema requires or
// fills with a default. A field added to a params type without its `properties` entry does not compile; a
// property added to a schema without the type fails here.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { SMOOTHING_STRENGTH } from '../src/algo/smoothquant.js';
import { EXAMPLE_SIZES } from '../src/model/example-model.js';
import { DEVICES } from '../src/ort/device.js';
import { outputDefs } from '../src/outputs/registry.js';
import { PRESET_SCHEMES } from '../src/quant/scheme.js';
import { outputFormats, schemaDir, stageKinds } from '../src/recipe/schemas.js';
import { stageDefs } from '../src/stages/registry.js';
import type { ParamKeys } from '../src/stages/stage.js';

type Schema = { properties?: Record<string, { default?: unknown }>; required?: string[] };

const readSchema = (file: string): Schema => JSON.parse(readFileSync(join(schemaDir(), file), 'utf8')) as Schema;

/** where a def's property list and a schema disagree, one line each */
function mismatches(properties: Readonly<Record<string, 'always' | 'optional'>>, schema: Schema): string[] {
  const out: string[] = [];
  const inSchema = schema.properties ?? {};
  for (const name of Object.keys(inSchema)) if (!(name in properties)) out.push(`"${name}" is in the schema but not in the params type`);
  for (const [name, presence] of Object.entries(properties)) {
    const prop = inSchema[name];
    if (!prop) {
      out.push(`"${name}" is in the params type but not in the schema`);
      continue;
    }
    const always = (schema.required ?? []).includes(name) || 'default' in prop;
    if (always !== (presence === 'always')) out.push(`"${name}" is ${presence} in the params type but ${always ? 'required or defaulted' : 'optional'} in the schema`);
  }
  return out;
}

describe('stage params and their schemas', () => {
  test('the stage registry has exactly the kinds the recipe schema lists, in its order', () => {
    expect(Object.keys(stageDefs)).toEqual([...stageKinds()]);
  });

  for (const [kind, def] of Object.entries(stageDefs)) {
    test(`${kind}: the StageDef's properties are the schema's`, () => {
      expect(def.kind).toBe(kind);
      expect(mismatches(def.properties, readSchema(`stages/${kind}.schema.json`))).toEqual([]);
    });
  }
});

describe('output options and their schemas', () => {
  test('the output registry has exactly the formats the recipe schema lists, in its order', () => {
    expect(Object.keys(outputDefs)).toEqual([...outputFormats()]);
  });

  for (const [format, def] of Object.entries(outputDefs)) {
    test(`${format}: the OutputDef's properties are the schema's`, () => {
      expect(def.format).toBe(format);
      expect(mismatches(def.properties, readSchema(`outputs/${format}.schema.json`))).toEqual([]);
    });
  }
});

describe('the comparison', () => {
  const schema: Schema = { required: ['kind'], properties: { kind: {}, iters: { default: 200 }, lr: {} } };

  test('reports a schema property the type lacks, a type field the schema lacks, and a presence mismatch', () => {
    expect(mismatches({ kind: 'always', iters: 'always', lr: 'optional' }, schema)).toEqual([]);
    expect(mismatches({ kind: 'always', iters: 'always' }, schema)).toEqual(['"lr" is in the schema but not in the params type']);
    expect(mismatches({ kind: 'always', iters: 'always', lr: 'optional', seed: 'always' }, schema)).toEqual(['"seed" is in the params type but not in the schema']);
    expect(mismatches({ kind: 'always', iters: 'optional', lr: 'always' }, schema)).toEqual([
      '"iters" is optional in the params type but required or defaulted in the schema',
      '"lr" is always in the params type but optional in the schema',
    ]);
  });

  test('a property list must name every field of its params type, with its presence', () => {
    interface Params {
      kind: 'x';
      iters: number;
      lr?: number;
    }
    const complete: ParamKeys<Params> = { kind: 'always', iters: 'always', lr: 'optional' };
    // @ts-expect-error: "lr" is missing
    const missing: ParamKeys<Params> = { kind: 'always', iters: 'always' };
    // @ts-expect-error: "iters" is always present, not optional
    const wrong: ParamKeys<Params> = { kind: 'always', iters: 'optional', lr: 'optional' };
    // @ts-expect-error: "seed" is not a field of Params
    const extra: ParamKeys<Params> = { kind: 'always', iters: 'always', lr: 'optional', seed: 'always' };
    expect([complete, missing, wrong, extra].length).toBe(4);
  });
});

describe('values declared once in TypeScript and stated in a schema', () => {
  test('the recipe schema offers exactly the preset schemes quant/scheme.ts defines', () => {
    const recipe = readSchema('recipe.schema.json') as { definitions: { scheme: { enum: string[] } } };
    expect([...recipe.definitions.scheme.enum].sort()).toEqual(Object.keys(PRESET_SCHEMES).sort());
  });

  test('the devices and example sizes the code accepts are the schema\'s', () => {
    const recipe = readSchema('recipe.schema.json') as { properties: { device: { enum: string[] }; model: { properties: { example: { enum: string[] } } } } };
    expect(recipe.properties.device.enum).toEqual([...DEVICES]);
    expect(recipe.properties.model.properties.example.enum).toEqual([...EXAMPLE_SIZES]);
  });

  test('smoothing_strength has the range algo/smoothquant.ts declares', () => {
    const prop = readSchema('stages/smoothquant.schema.json').properties!['smoothing_strength'] as Record<string, unknown>;
    expect({ minimum: prop['minimum'], maximum: prop['maximum'] }).toEqual(SMOOTHING_STRENGTH);
    expect(prop).not.toHaveProperty('exclusiveMinimum');
    expect(prop).not.toHaveProperty('exclusiveMaximum');
  });
});
