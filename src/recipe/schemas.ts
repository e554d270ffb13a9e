// The recipe, stage and output JSON Schemas (schema/*.json). A valid recipe is checked by the precompiled
// validators (schema/validators.generated.cjs, ajv standalone code generated from these files by
// recipe/validators-codegen.ts), so a run costs no schema compilation; only when they find a mistake is one ajv
// instance compiled (once per process) to list every error with its schema. Schemas are registered under
// their file URLs, so their relative $refs resolve as they do in an editor. The stage kinds and output formats
// are the files recipe.schema.json lists (`oneOf` under `stages` and `outputs`), in that order; the recipe
// layer knows nothing else about them.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Ajv, AnySchemaObject, Options, ValidateFunction } from 'ajv';
import { isRecord } from './json-path.js';
import { readJsonFile } from '../diag/file-errors.js';

/** the precompiled validators' file in the schema directory */
export const PRECOMPILED_FILE = 'validators.generated.cjs';

/** how both the run-time and the precompiled validators are built (errors: every one, with their schemas) */
export const AJV_OPTIONS: Options = {
  allErrors: true,
  strict: true,
  // `not: {required: [scheme, config_groups]}` names properties defined by the parent, which this rule misreads
  strictRequired: false,
  allowUnionTypes: true,
  discriminator: true,
  useDefaults: true,
  // errors carry the failing schema and data, which the messages need (allowed keys, ranges, found values)
  verbose: true,
};

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
}

/** a validator that only answers valid-or-not (filling defaults), from the generated module */
export type QuickValidate = (data: unknown) => boolean;

interface Precompiled {
  readonly recipe: QuickValidate;
  readonly stages: ReadonlyMap<string, QuickValidate>;
  readonly kinds: readonly string[];
  readonly formats: readonly string[];
}

let compiled: Compiled | undefined;
let precompiled: Precompiled | undefined;

/** the schema files (relative to the schema directory) and the kinds and formats recipe.schema.json lists */
export function schemaFiles(dir = schemaDir()): { files: string[]; kinds: string[]; formats: string[] } {
  const recipe = readJsonFile(join(dir, 'recipe.schema.json')) as AnySchemaObject;
  const kinds = listed(recipe, 'stages');
  const formats = listed(recipe, 'outputs');
  return { files: ['recipe.schema.json', ...kinds.map((k) => `stages/${k}.schema.json`), ...formats.map((f) => `outputs/${f}.schema.json`)], kinds, formats };
}

function compile(): Compiled {
  const dir = schemaDir();
  const { Ajv: AjvClass } = createRequire(import.meta.url)('ajv') as { Ajv: new (o: Options) => Ajv };
  const ajv = new AjvClass(AJV_OPTIONS);
  const { files, kinds } = schemaFiles(dir);
  const documents = new Map<string, AnySchemaObject>();
  for (const file of files) {
    const url = pathToFileURL(join(dir, file)).href;
    const schema = readJsonFile(join(dir, file)) as AnySchemaObject;
    documents.set(url, schema);
    ajv.addSchema(schema, url);
  }
  const get = (file: string): ValidateFunction => {
    const validate = ajv.getSchema(pathToFileURL(join(dir, file)).href);
    if (!validate) throw new Error(`schema ${file} did not compile`);
    return validate;
  };
  const stages = new Map(kinds.map((kind) => [kind, get(`stages/${kind}.schema.json`)] as const));
  return { ajv, documents, recipe: get('recipe.schema.json'), stages };
}

function loadPrecompiled(): Precompiled {
  const m = createRequire(import.meta.url)(join(schemaDir(), PRECOMPILED_FILE)) as Record<string, unknown> & { kinds: string[]; formats: string[] };
  const stages = new Map(m.kinds.map((kind) => [kind, m[`stage_${kind}`] as QuickValidate] as const));
  return { recipe: m['recipe'] as QuickValidate, stages, kinds: m.kinds, formats: m.formats };
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

function quick(): Precompiled {
  precompiled ??= loadPrecompiled();
  return precompiled;
}

/** the precompiled check of a whole recipe: valid or not, defaults filled in place; no error list */
export function quickRecipeValidator(): QuickValidate {
  return quick().recipe;
}

/** the precompiled check of one stage object */
export function quickStageValidator(kind: string): QuickValidate {
  const validate = quick().stages.get(kind);
  if (!validate) throw new Error(`no schema for stage kind "${kind}"`);
  return validate;
}

/** validates a whole recipe (plain JSON data) and lists every error; fills defaults in place */
export function recipeValidator(): ValidateFunction {
  return schemas().recipe;
}

/** validates one stage object on its own and lists every error; fills defaults in place */
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
  return quick().kinds;
}

/** the output formats, in the order the recipe schema lists them */
export function outputFormats(): readonly string[] {
  return quick().formats;
}
