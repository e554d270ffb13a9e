// `--set path=value[,value...]`: values are YAML scalars or flow collections (`[a, b]`); several
// comma-separated values make a sweep axis. Each argument is its own SourceFile named `--set`, so a bad
// path or value is reported with a squiggle under the argument text.

import { isMap, isScalar, isSeq, parseDocument, type Document } from 'yaml';
import { errorAt, type Diagnostic, type Location, type SourceFile } from '../diag/diagnostic.js';
import type { Result } from '../diag/result.js';
import { formatPath } from './json-path.js';
import { parseOverridePath } from './override-path.js';
import type { Assignment, JsonPath } from './types.js';
import { toData } from './yaml-source.js';

export interface ParsedOverride {
  readonly file: SourceFile;
  readonly path: JsonPath;
  /** the path as written */
  readonly key: string;
  /** one value, or several for a sweep */
  readonly values: readonly unknown[];
  /** `assignments[i]` sets `values[i]` */
  readonly assignments: readonly Assignment[];
  /** the path text */
  readonly location: Location;
}

export function parseOverride(text: string): Result<ParsedOverride> {
  const file: SourceFile = { path: '--set', contents: text };
  const equals = text.indexOf('=');
  if (equals === -1) {
    return fail(errorAt('override-syntax', `Missing "=" in "${text}": expected path=value, as in stages[0].iters=50.`, at(file, 0, text.length)));
  }
  const parsedPath = parseOverridePath(text.slice(0, equals), file);
  if (!parsedPath.ok) return parsedPath;
  const { path, segments } = parsedPath.value;
  if (path[0] === 'sweep') {
    return fail(errorAt('override-bad-path', 'The sweep block cannot be set with --set: give several comma-separated values to sweep a parameter.', at(file, 0, equals)));
  }
  const errors: Diagnostic[] = [];
  const assignments: Assignment[] = [];
  for (const piece of splitValues(text, equals + 1)) {
    const value = parseValue(file, piece.offset, piece.text);
    if (!value.ok) errors.push(...value.error);
    else assignments.push({ path, value: value.value, site: { segments, value: at(file, piece.offset, piece.text.length) } });
  }
  if (errors.length > 0) return { ok: false, error: errors };
  return {
    ok: true,
    value: { file, path, key: text.slice(0, equals), values: assignments.map((a) => a.value), assignments, location: at(file, 0, equals) },
  };
}

/** the comma-separated values after `start`, ignoring commas inside brackets, braces and quotes */
export function splitValues(text: string, start: number): { text: string; offset: number }[] {
  const pieces: { text: string; offset: number }[] = [];
  let depth = 0;
  let quote: string | undefined;
  let from = start;
  const push = (end: number) => {
    const raw = text.slice(from, end);
    const lead = raw.length - raw.trimStart().length;
    pieces.push({ text: raw.trim(), offset: from + lead });
  };
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (quote !== undefined) {
      if (c === quote) quote = undefined;
      else if (c === '\\' && quote === '"') i++;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '[' || c === '{') depth++;
    else if ((c === ']' || c === '}') && depth > 0) depth--;
    else if (c === ',' && depth === 0) {
      push(i);
      from = i + 1;
    }
  }
  push(text.length);
  return pieces;
}

function parseValue(file: SourceFile, offset: number, text: string): Result<unknown> {
  if (text === '') {
    return fail(errorAt('override-syntax', 'Missing value: expected a YAML value such as 50, true, null, W8A8 or [a, b].', at(file, Math.min(offset, file.contents.length), 0)));
  }
  const doc = parseDocument(text, { prettyErrors: false, logLevel: 'error' });
  const [first] = doc.errors;
  if (first) {
    const message = first.message.replace(/\.$/, '');
    return fail(errorAt('override-value-syntax', `Invalid value ${JSON.stringify(text)}: ${message}.`, at(file, offset, text.length)));
  }
  const data = toData(doc, { path: file.path, contents: text });
  if (!data.ok) return fail(errorAt('override-value-syntax', `Invalid value ${JSON.stringify(text)}: ${data.error[0]!.message}`, at(file, offset, text.length)));
  return data;
}

/** sets one value in the document, creating missing maps on the way; lists must already have the index */
export function applyAssignment(doc: Document, assignment: Assignment): Diagnostic | undefined {
  const { path, value, site } = assignment;
  if (doc.contents === null) doc.contents = doc.createNode({});
  let node: unknown = doc.contents;
  for (let i = 0; i < path.length; i++) {
    const segment = path[i];
    const where = site.segments[i] ?? site.value;
    const here = formatPath(path.slice(0, i));
    const last = i === path.length - 1;
    if (isSeq(node)) {
      if (typeof segment !== 'number') {
        return errorAt('override-bad-path', `"${here}" is a list: expected an index such as ${here}[0], found "${String(segment)}".`, where);
      }
      if (segment >= node.items.length) {
        const range = node.items.length === 0 ? 'it is empty' : `it has ${node.items.length} item${node.items.length === 1 ? '' : 's'}, so the index must be 0 to ${node.items.length - 1}`;
        return errorAt('override-bad-path', `No item [${segment}] in "${here}": ${range}.`, where);
      }
    } else if (isMap(node)) {
      if (typeof segment === 'number') {
        return errorAt('override-bad-path', `${here === '' ? 'The recipe' : `"${here}"`} is a map: expected a property name, found the index [${segment}].`, where);
      }
    } else {
      const kind = isScalar(node) ? describeScalar(node.value) : 'not a map';
      return errorAt('override-bad-path', `"${here}" is ${kind}, so it has no ${typeof segment === 'number' ? `item [${segment}]` : `property "${segment}"`}.`, where);
    }
    if (last) {
      node.set(segment, doc.createNode(value));
      return undefined;
    }
    let next: unknown = node.get(segment, true);
    if (next === undefined || (isScalar(next) && next.value === null)) {
      if (typeof path[i + 1] === 'number') {
        return errorAt('override-bad-path', `"${formatPath(path.slice(0, i + 1))}" has no items, so it has no item [${String(path[i + 1])}].`, site.segments[i + 1] ?? where);
      }
      next = doc.createNode({});
      node.set(segment, next);
    }
    node = next;
  }
  // an empty path replaces the whole recipe, which --set cannot express
  return errorAt('override-bad-path', 'Missing path: expected a path such as stages[0].iters.', site.value);
}

function describeScalar(value: unknown): string {
  if (typeof value === 'string') return 'a string';
  if (typeof value === 'number') return 'a number';
  if (typeof value === 'boolean') return 'a boolean';
  return 'not a map';
}

function at(file: SourceFile, offset: number, length: number): Location {
  return { file, range: { offset, length } };
}

function fail(diagnostic: Diagnostic): { ok: false; error: Diagnostic[] } {
  return { ok: false, error: [diagnostic] };
}
