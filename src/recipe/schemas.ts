// The recipe and stage JSON Schemas (schema/*.json), compiled once by one ajv instance and reused.
// Schemas are registered under their file URLs, so their relative $refs resolve as they do in an editor.

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Ajv, type AnySchemaObject, type ValidateFunction } from 'ajv';
import { STAGE_KINDS, type StageKind } from './types.js';

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
  readonly stages: ReadonlyMap<StageKind, ValidateFunction>;
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
  const files = ['recipe.schema.json', ...STAGE_KINDS.map((kind) => `stages/${kind}.schema.json`)];
  const documents = new Map<string, AnySchemaObject>();
  for (const file of files) {
    const path = join(dir, file);
    const schema = JSON.parse(readFileSync(path, 'utf8')) as AnySchemaObject;
    documents.set(pathToFileURL(path).href, schema);
    ajv.addSchema(schema, pathToFileURL(path).href);
  }
  const get = (file: string): ValidateFunction => {
    const validate = ajv.getSchema(pathToFileURL(join(dir, file)).href);
    if (!validate) throw new Error(`schema ${file} did not compile`);
    return validate;
  };
  const stages = new Map(STAGE_KINDS.map((kind) => [kind, get(`stages/${kind}.schema.json`)] as const));
  return { ajv, documents, recipe: get('recipe.schema.json'), stages };
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
export function stageValidator(kind: StageKind): ValidateFunction {
  const validate = schemas().stages.get(kind);
  if (!validate) throw new Error(`no schema for stage kind "${kind}"`);
  return validate;
}

export function schemaDocuments(): ReadonlyMap<string, AnySchemaObject> {
  return schemas().documents;
}
