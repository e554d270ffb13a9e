// The recipe, stage and output JSON Schemas (schema/*.json), compiled once by one ajv instance and reused.
// Schemas are registered under their file URLs, so their relative $refs resolve as they do in an editor.
// The stage kinds and output formats are the files recipe.schema.json lists (`oneOf` under `stages` and
// `outputs`), in that order; the recipe layer knows nothing else about them.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Ajv, type AnySchemaObject, type ValidateFunction } from 'ajv';
import { isRecord } from './json-path.js';
import { readJsonFile } from '../diag/file-errors.js';

/** the repository's (or installed package's) schema/ directory, found upward from this module */
export function schemaDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'schema');
    if (existsSync(join(candidate, 'recipe.schema.json'))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('schema/recipe.schema.json not found above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

interface Compiled {
  readonly ajv: Ajv;
  /** the schema files as parsed, by URL; ajv keeps these very objects, so errors' schemas are found in them */
  readonly documents: ReadonlyMap<string, AnySchemaObject>;
  readonly recipe: ValidateFunction;
  /** by kind, in the recipe schema's order */
  readonly stages: ReadonlyMap<string, ValidateFunction>;
  /** output formats, in the recipe schema's order */
  readonly formats: readonly string[];
}

let compiled: Compiled | undefined;

function compile(): Compiled {
  const dir = schemaDir();
  const ajv = new Ajv({
    allErrors: true,
    strict: true,
    // `not: {required: [scheme, config_groups]}` names properties defined by the parent, which this rule misreads
    strictRequired: false,
    allowUnionTypes: true,
    discriminator: true,
    useDefaults: true,
    // errors carry the failing schema and data, which the messages need (allowed keys, ranges, found values)
    verbose: true,
  });
  const read = (file: string): AnySchemaObject => readJsonFile(join(dir, file)) as AnySchemaObject;
  const recipe = read('recipe.schema.json');
  const kinds = listed(recipe, 'stages');
  const formats = listed(recipe, 'outputs');
  const documents = new Map<string, AnySchemaObject>();
  const files = ['recipe.schema.json', ...kinds.map((k) => `stages/${k}.schema.json`), ...formats.map((f) => `outputs/${f}.schema.json`)];
  for (const file of files) {
    const url = pathToFileURL(join(dir, file)).href;
    const schema = file === 'recipe.schema.json' ? recipe : read(file);
    documents.set(url, schema);
    ajv.addSchema(schema, url);
  }
  const get = (file: string): ValidateFunction => {
    const validate = ajv.getSchema(pathToFileURL(join(dir, file)).href);
    if (!validate) throw new Error(`schema ${file} did not compile`);
    return validate;
  };
  const stages = new Map(kinds.map((kind) => [kind, get(`stages/${kind}.schema.json`)] as const));
  return { ajv, documents, recipe: get('recipe.schema.json'), stages, formats };
}

/** the names of the schema files `properties.<list>.items.oneOf` refers to: `stages/gptq.schema.json` → gptq */
function listed(recipe: AnySchemaObject, list: 'stages' | 'outputs'): string[] {
  const properties: unknown = recipe['properties'];
  const items: unknown = isRecord(properties) && isRecord(properties[list]) ? properties[list]['items'] : undefined;
  const branches: unknown = isRecord(items) ? items['oneOf'] : undefined;
  if (!Array.isArray(branches)) throw new Error(`recipe.schema.json: ${list}.items has no oneOf list of schema files`);
  return branches.map((b: unknown) => {
    const ref = isRecord(b) && typeof b['$ref'] === 'string' ? b['$ref'] : '';
    const m = new RegExp(`^${list}/([a-z0-9-]+)\\.schema\\.json$`).exec(ref);
    if (!m) throw new Error(`recipe.schema.json: ${list}.items.oneOf entry ${JSON.stringify(b)} is not a $ref to ${list}/<name>.schema.json`);
    return m[1]!;
  });
}

function schemas(): Compiled {
  compiled ??= compile();
  return compiled;
}

/** validates a whole recipe (plain JSON data); fills defaults in place */
export function recipeValidator(): ValidateFunction {
  return schemas().recipe;
}

/** validates one stage object on its own; fills defaults in place */
export function stageValidator(kind: string): ValidateFunction {
  const validate = schemas().stages.get(kind);
  if (!validate) throw new Error(`no schema for stage kind "${kind}"`);
  return validate;
}

export function schemaDocuments(): ReadonlyMap<string, AnySchemaObject> {
  return schemas().documents;
}

/** the stage kinds, in the order the recipe schema lists them */
export function stageKinds(): readonly string[] {
  return [...schemas().stages.keys()];
}

/** the output formats, in the order the recipe schema lists them */
export function outputFormats(): readonly string[] {
  return schemas().formats;
}
