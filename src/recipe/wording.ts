// How messages name things: a property by its path and the stage it sits in, a value by its YAML type.

import { formatPath, valueAt } from './json-path.js';
import { stageKinds } from './schemas.js';
import type { JsonPath } from './types.js';

/** `in stage "gptq"`, `in "config_groups.g.weights" of stage "gptq"`, `in "calibration"`, `at the top level` */
export function where(container: JsonPath, data: unknown): string {
  if (container.length === 0) return 'at the top level';
  const [head, index, ...rest] = container;
  if (head === 'stages' && typeof index === 'number') {
    const stage = stageName(index, data);
    return rest.length === 0 ? `in ${stage}` : `in "${formatPath(rest)}" of ${stage}`;
  }
  return `in "${formatPath(container)}"`;
}

/** `"samples" in "calibration"`, `"targets[1]" in stage "gptq"`, `"model"` */
export function subject(path: JsonPath, data: unknown): string {
  if (path.length === 0) return 'the recipe';
  let split = path.length;
  while (split > 0 && typeof path[split - 1] === 'number') split--;
  split = Math.max(split - 1, 0);
  // a whole stage is named by its kind
  if (path.length === 2 && path[0] === 'stages' && typeof path[1] === 'number') return stageName(path[1], data);
  const name = `"${formatPath(path.slice(split))}"`;
  const container = path.slice(0, split);
  return container.length === 0 ? name : `${name} ${where(container, data)}`;
}

function stageName(index: number, data: unknown): string {
  const kind = valueAt(data, ['stages', index, 'kind']);
  return typeof kind === 'string' && stageKinds().includes(kind)
    ? `stage "${kind}"`
    : `stage ${index + 1} ("stages[${index}]")`;
}

/** a value as the user wrote it, for messages: `a string ("abc")`, `an integer (5)`, `a list` */
export function found(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (typeof value === 'string') return `a string (${quote(value)})`;
  if (typeof value === 'number') return Number.isInteger(value) ? `an integer (${value})` : `a number (${value})`;
  if (typeof value === 'boolean') return `a boolean (${value})`;
  if (Array.isArray(value)) return value.length === 0 ? 'an empty list' : 'a list';
  return 'a map';
}

const TYPE_NAMES: Record<string, string> = {
  integer: 'an integer',
  number: 'a number',
  string: 'a string',
  boolean: 'a boolean',
  object: 'a map',
  array: 'a list',
  null: 'null',
};

export function expectedTypes(types: string | readonly string[]): string {
  const list = typeof types === 'string' ? [types] : types;
  return list.map((t) => TYPE_NAMES[t] ?? t).join(' or ');
}

/** a literal as YAML would show it: strings quoted, others as JSON */
export function literal(value: unknown): string {
  return typeof value === 'string' ? quote(value) : value === undefined ? 'nothing' : JSON.stringify(value);
}

export function literals(values: readonly unknown[]): string {
  return values.map(literal).join(', ');
}

function quote(s: string): string {
  return JSON.stringify(s.length > 60 ? `${s.slice(0, 57)}...` : s);
}
