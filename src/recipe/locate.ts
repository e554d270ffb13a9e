// Where a message about a JSON path points: into the text of the override that set the value when one
// did (a --set argument or a sweep entry), otherwise at the YAML node in the recipe file.

import { isMap, isNode, isScalar, parseDocument, type Document } from 'yaml';
import type { Location, SourceFile } from '../diag/diagnostic.js';
import { isPrefix } from './json-path.js';
import type { Assignment, JsonPath } from './types.js';
import type { IssueTarget } from './validate.js';
import { nodeLocation } from './yaml-source.js';

export interface LocateContext {
  readonly doc: Document;
  readonly file: SourceFile;
  /** in the order they were applied: a later one wins */
  readonly assignments: readonly Assignment[];
}

export function locatePath(ctx: LocateContext, path: JsonPath, target: IssueTarget = 'value'): Location {
  const latestFirst = [...ctx.assignments].reverse();
  for (const a of latestFirst) {
    if (!isPrefix(a.path, path)) continue;
    const lastSegment = a.site.segments[a.site.segments.length - 1];
    if (target === 'key' && path.length === a.path.length && lastSegment) return lastSegment;
    return locateInValue(a.site.value, path.slice(a.path.length), target);
  }
  const inFile = nodeLocation(ctx.doc, ctx.file, path, target);
  if (inFile) return inFile;
  // a map an override created on its way: point at the path segment that named it
  for (const a of latestFirst) {
    if (path.length > 0 && isPrefix(path, a.path)) return a.site.segments[path.length - 1] ?? a.site.value;
  }
  for (let n = path.length - 1; n >= 0; n--) {
    const ancestor = nodeLocation(ctx.doc, ctx.file, path.slice(0, n), 'value');
    if (ancestor) return ancestor;
  }
  return { file: ctx.file, range: { offset: 0, length: 0 } };
}

/** a path inside a value written as YAML text (`{num_bits: 3}` in a --set argument) */
function locateInValue(value: Location, path: JsonPath, target: IssueTarget): Location {
  if (path.length === 0) return value;
  const { offset, length } = value.range;
  const doc = parseDocument(value.file.contents.slice(offset, offset + length));
  let range: readonly number[] | null | undefined;
  if (target === 'key') {
    const parent = doc.getIn(path.slice(0, -1), true);
    const pair = isMap(parent) ? parent.items.find((p) => isScalar(p.key) && p.key.value === path[path.length - 1]) : undefined;
    range = pair && isNode(pair.key) ? pair.key.range : undefined;
  } else {
    const node = doc.getIn(path, true);
    range = isNode(node) ? node.range : undefined;
  }
  const start = range?.[0];
  const end = range?.[1];
  if (start === undefined || end === undefined) return value;
  return { file: value.file, range: { offset: offset + start, length: end - start } };
}
