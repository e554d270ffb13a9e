// ajv's errors → Issues: one readable message per mistake, addressed by JSON path (load.ts finds the
// YAML node). ajv reports composite keywords (anyOf, if/then, not) as extra noise; here they are either
// turned into one specific message or dropped in favour of the errors inside them.

import type { ErrorObject } from 'ajv';
import { suggest } from '../diag/suggest.js';
import { isRecord, pointerToPath } from './json-path.js';
import { outputFormats, quickRecipeValidator, quickStageValidator, recipeValidator, stageKinds, stageValidator } from './schemas.js';
import type { JsonPath, LocationTarget } from './types.js';
import { nestedProperties } from './vocabulary.js';
import { expectedTypes, found, literal, literals, subject, where } from './wording.js';

export type IssueTarget = LocationTarget;

export interface Issue {
  readonly code: string;
  readonly message: string;
  readonly path: JsonPath;
  readonly target: IssueTarget;
  readonly related?: readonly { message: string; path: JsonPath; target: IssueTarget }[];
}

/**
 * valid data is checked (and defaulted) by the precompiled validator alone; invalid data, from a copy taken
 * before it, by the run-time compiled one, which lists every error with its schema
 */
function quickly(quick: (data: unknown) => boolean, data: unknown): { ok: true } | { ok: false; data: unknown } {
  const pristine = structuredClone(data);
  return quick(data) ? { ok: true } : { ok: false, data: pristine };
}

/** validates (and fills defaults into) plain recipe data */
export function validateRecipeData(data: unknown): Issue[] {
  const q = quickly(quickRecipeValidator(), data);
  if (q.ok) return [];
  const validate = recipeValidator();
  return validate(q.data) ? [] : issuesFromAjv(validate.errors ?? [], q.data);
}

/** validates one stage object on its own (e.g. a value meant for `stages[i]`); paths are relative to the stage */
export function validateStageData(kind: string, data: unknown): Issue[] {
  const q = quickly(quickStageValidator(kind), data);
  if (q.ok) return [];
  data = q.data;
  const validate = stageValidator(kind);
  if (validate(data)) return [];
  // messages name stages by their place in a recipe, so validate as stage 0 of one
  const wrapped = { stages: [data] };
  return issuesFromAjv(
    (validate.errors ?? []).map((e) => ({ ...e, instancePath: `/stages/0${e.instancePath}` })),
    wrapped,
  ).map((issue) => ({ ...issue, path: issue.path.slice(2) }));
}

export function issuesFromAjv(errors: readonly ErrorObject[], data: unknown): Issue[] {
  const dropped = new Set<ErrorObject>();
  for (const e of errors) {
    if (e.keyword !== 'anyOf' && e.keyword !== 'oneOf' && e.keyword !== 'if') continue;
    dropped.add(e);
    // a "one of these properties" anyOf speaks for its branches; other composites let their branches speak
    if (e.keyword === 'anyOf' && requiredBranches(e.schema) !== undefined) {
      for (const inner of errors) {
        if (inner.instancePath === e.instancePath && inner.schemaPath.startsWith(`${e.schemaPath}/`)) dropped.add(inner);
      }
      dropped.delete(e);
    }
  }
  const issues: Issue[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    if (dropped.has(e)) continue;
    const issue = toIssue(e, data);
    const key = `${issue.code}|${issue.path.join('/')}|${issue.message}`;
    if (!seen.has(key)) {
      seen.add(key);
      issues.push(issue);
    }
  }
  return issues;
}

function toIssue(e: ErrorObject, data: unknown): Issue {
  const path = pointerToPath(e.instancePath, data);
  const params = e.params as Record<string, unknown>;
  const parent = isRecord(e.parentSchema) ? e.parentSchema : {};
  const because = e.schemaPath.includes('/then/') && typeof parent.description === 'string' ? `: ${parent.description}` : '';
  switch (e.keyword) {
    case 'required':
      return {
        code: 'missing-property',
        message: `Missing required property "${String(params.missingProperty)}" ${where(path, data)}${because}.`,
        path,
        target: 'container',
      };
    case 'additionalProperties':
      return unknownProperty(path, String(params.additionalProperty), parent, data);
    case 'type':
      if (path.length === 0 && (e.data === null || e.data === undefined)) {
        return { code: 'recipe-empty', message: 'The recipe is empty: expected a map with "quantforge", "model" and "stages".', path, target: 'value' };
      }
      return {
        code: 'wrong-type',
        message: `Wrong type for ${subject(path, data)}: expected ${expectedTypes(params.type as string | string[])}, found ${found(e.data)}${because}.`,
        path,
        target: 'value',
      };
    case 'enum':
      return invalidValue(path, e.data, params.allowedValues as unknown[], data);
    case 'const':
      return {
        code: 'invalid-value',
        message: `Invalid value ${literal(e.data)} for ${subject(path, data)}: expected ${literal(params.allowedValue)}.`,
        path,
        target: 'value',
      };
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return {
        code: 'out-of-range',
        message: `Value ${literal(e.data)} for ${subject(path, data)} is out of range: expected ${bounds(parent)}.`,
        path,
        target: 'value',
      };
    case 'minItems':
    case 'minProperties': {
      const size = Array.isArray(e.data) ? e.data.length : isRecord(e.data) ? Object.keys(e.data).length : 0;
      const count = (n: number) => `${n} ${e.keyword === 'minItems' ? (n === 1 ? 'item' : 'items') : n === 1 ? 'entry' : 'entries'}`;
      const what = size === 0 ? 'is empty' : `has ${count(size)}`;
      return {
        code: 'too-few-items',
        message: `${capitalize(subject(path, data))} ${what}: expected at least ${count(Number(params.limit))}.`,
        path,
        target: 'value',
      };
    }
    case 'minLength':
      return {
        code: 'empty-string',
        message: `${capitalize(subject(path, data))} is an empty string: expected a non-empty string.`,
        path,
        target: 'value',
      };
    case 'discriminator':
      return path[0] === 'stages' ? stageKindIssue(path, params, data) : formatIssue(path, params, data);
    case 'not':
      return conflict(path, e.schema, data) ?? placeholder(path, e.schema, e.data, data) ?? fallback(e, path, data);
    case 'anyOf': {
      const names = requiredBranches(e.schema) ?? [];
      return {
        code: 'missing-one-of',
        message: `Missing ${names.map((n) => `"${n}"`).join(' or ')} ${where(path, data)}: expected one of them.`,
        path,
        target: 'container',
      };
    }
    default:
      return fallback(e, path, data);
  }
}

function unknownProperty(container: JsonPath, name: string, schema: Record<string, unknown>, data: unknown): Issue {
  const known = Object.keys(isRecord(schema.properties) ? schema.properties : {});
  const nested = nestedProperties(schema);
  const sibling = suggest(name, known);
  const deeper = sibling === undefined ? (nested.has(name) ? name : suggest(name, nested.keys())) : undefined;
  let hint = '';
  if (sibling !== undefined) hint = ` Did you mean "${sibling}"?`;
  else if (deeper === name) hint = ` "${name}" belongs in ${nested.get(name) ?? ''}.`;
  else if (deeper !== undefined) hint = ` Did you mean "${deeper}" in ${nested.get(deeper) ?? ''}?`;
  else if (known.length > 0) hint = ` Allowed properties: ${known.join(', ')}.`;
  return {
    code: 'unknown-property',
    message: `Unknown property "${name}" ${where(container, data)}.${hint}`,
    path: [...container, name],
    target: 'key',
  };
}

function invalidValue(path: JsonPath, value: unknown, allowed: unknown[], data: unknown): Issue {
  const strings = allowed.filter((v): v is string => typeof v === 'string');
  const guess = typeof value === 'string' ? suggest(value, strings) : undefined;
  const hint = guess !== undefined ? ` Did you mean ${literal(guess)}?` : '';
  return {
    code: 'invalid-value',
    message: `Invalid value ${literal(value)} for ${subject(path, data)}.${hint} Allowed values: ${literals(allowed)}.`,
    path,
    target: 'value',
  };
}

function stageKindIssue(stage: JsonPath, params: Record<string, unknown>, data: unknown): Issue {
  const kindPath = [...stage, String(params.tag)];
  const kinds = stageKinds();
  const allowed = `Allowed kinds: ${kinds.join(', ')}.`;
  if (params.error === 'mapping') {
    const guess = typeof params.tagValue === 'string' ? suggest(params.tagValue, kinds) : undefined;
    const hint = guess !== undefined ? ` Did you mean "${guess}"?` : '';
    return { code: 'unknown-stage-kind', message: `Unknown stage kind ${literal(params.tagValue)}.${hint} ${allowed}`, path: kindPath, target: 'value' };
  }
  if (params.tagValue === undefined) {
    return { code: 'missing-property', message: `Missing required property "kind" ${where(stage, data)}. ${allowed}`, path: stage, target: 'container' };
  }
  return {
    code: 'wrong-type',
    message: `Wrong type for ${subject(kindPath, data)}: expected a string, found ${found(params.tagValue)}. ${allowed}`,
    path: kindPath,
    target: 'value',
  };
}

/** an output entry's `format` that names no output schema (or is missing) */
function formatIssue(output: JsonPath, params: Record<string, unknown>, data: unknown): Issue {
  const tag = String(params.tag);
  if (params.tagValue === undefined) {
    return { code: 'missing-property', message: `Missing required property "${tag}" ${where(output, data)}.`, path: output, target: 'container' };
  }
  return invalidValue([...output, tag], params.tagValue, [...outputFormats()], data);
}

/** `not: {required: [a, b]}` means a and b exclude each other */
function conflict(container: JsonPath, schema: unknown, data: unknown): Issue | undefined {
  const names = isRecord(schema) && Array.isArray(schema.required) ? schema.required.map(String) : [];
  const [first, second] = names;
  if (names.length !== 2 || first === undefined || second === undefined) return undefined;
  return {
    code: 'conflicting-properties',
    message: `"${first}" and "${second}" cannot be used together ${where(container, data)}: use one or the other.`,
    path: [...container, second],
    target: 'key',
    related: [{ message: `"${first}" is set here`, path: [...container, first], target: 'key' }],
  };
}

/** `not: {$ref: placeholder}`: a value `quantforge import` left for the user to fill in */
function placeholder(path: JsonPath, schema: unknown, value: unknown, data: unknown): Issue | undefined {
  const ref = isRecord(schema) && typeof schema.$ref === 'string' ? schema.$ref : '';
  if (!ref.endsWith('/definitions/placeholder') || typeof value !== 'string') return undefined;
  return {
    code: 'placeholder',
    message: `${capitalize(subject(path, data))} is still the placeholder ${literal(value)}: replace this placeholder with a real path.`,
    path,
    target: 'value',
  };
}

/** the property names of an anyOf whose branches are each `{required: [name]}` */
function requiredBranches(schema: unknown): string[] | undefined {
  if (!Array.isArray(schema)) return undefined;
  const names: string[] = [];
  for (const branch of schema) {
    if (!isRecord(branch) || Object.keys(branch).length !== 1 || !Array.isArray(branch.required) || branch.required.length !== 1) return undefined;
    names.push(String(branch.required[0]));
  }
  return names;
}

function bounds(schema: Record<string, unknown>): string {
  const parts: string[] = [];
  if (typeof schema.minimum === 'number') parts.push(`>= ${schema.minimum}`);
  if (typeof schema.exclusiveMinimum === 'number') parts.push(`> ${schema.exclusiveMinimum}`);
  if (typeof schema.maximum === 'number') parts.push(`<= ${schema.maximum}`);
  if (typeof schema.exclusiveMaximum === 'number') parts.push(`< ${schema.exclusiveMaximum}`);
  const kind = schema.type === 'integer' || (Array.isArray(schema.type) && schema.type.includes('integer')) ? 'an integer' : 'a number';
  return `${kind} ${parts.join(' and ')}`;
}

function fallback(e: ErrorObject, path: JsonPath, data: unknown): Issue {
  return { code: 'schema-violation', message: `${capitalize(subject(path, data))} ${e.message ?? 'is invalid'}.`, path, target: 'value' };
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

