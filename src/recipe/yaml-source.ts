// The recipe as a YAML Document with source ranges: syntax errors become Diagnostics, and a JSON path
// can be turned back into the Location of the key or value that a message is about.

import { isMap, isNode, isScalar, parseDocument, visit, type Alias, type Document, type Node, type Pair, type YAMLError } from 'yaml';
import { errorAt, warningAt, type Diagnostic, type Location, type RelatedInfo, type SourceFile } from '../diag/diagnostic.js';
import type { Result } from '../diag/result.js';
import type { IssueTarget } from './validate.js';
import type { JsonPath } from './types.js';

export interface ParsedYaml {
  readonly doc: Document;
  readonly warnings: Diagnostic[];
}

export function parseYaml(file: SourceFile): Result<ParsedYaml> {
  // logLevel 'error': yaml would print its warnings (a collection used as a key) to stderr; they reach the user as diagnostics
  const doc = parseDocument(file.contents, { prettyErrors: false, uniqueKeys: true, logLevel: 'error' });
  const warnings = doc.warnings.map((w) => warningAt(yamlCode(w), `YAML: ${sentence(w.message)}.`, yamlErrorLocation(file, w)));
  if (doc.errors.length === 0) return { ok: true, value: { doc, warnings } };
  return { ok: false, error: [...doc.errors.map((e) => yamlDiagnostic(file, doc, e)), ...warnings] };
}

/** alias expansions allowed when turning a document into data (yaml's default; a bomb needs far more) */
const MAX_ALIAS_COUNT = 100;

/**
 * `doc` (or one `node` of it) as plain data. yaml throws while resolving aliases (an alias before its anchor,
 * or a "billion laughs" alias bomb); those become a diagnostic at the alias instead.
 */
export function toData(doc: Document, file: SourceFile, node?: Node): Result<unknown> {
  try {
    const value: unknown = node ? node.toJS(doc, { maxAliasCount: MAX_ALIAS_COUNT }) : doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    return { ok: true, value };
  } catch (e) {
    if (!(e instanceof ReferenceError)) throw e;
    const aliases: Alias[] = [];
    visit(node ?? doc, { Alias: (_, a) => void aliases.push(a) });
    const unresolved = aliases.find((a) => a.resolve(doc) === undefined);
    const alias = unresolved ?? aliases[0];
    const location = alias?.range ? rangeLocation(file, alias.range) : { file, range: { offset: 0, length: 0 } };
    if (unresolved) {
      return { ok: false, error: [errorAt('yaml-unresolved-alias', `Unknown alias "*${unresolved.source}": no anchor "&${unresolved.source}" is set before it.`, location)] };
    }
    const message = `Aliases expand to more than ${MAX_ALIAS_COUNT} values: an alias may repeat a value, not multiply it (this looks like an alias bomb).`;
    return { ok: false, error: [errorAt('yaml-alias-limit', message, location)] };
  }
}

function yamlDiagnostic(file: SourceFile, doc: Document, e: YAMLError): Diagnostic {
  const location = yamlErrorLocation(file, e);
  if (e.code === 'DUPLICATE_KEY') {
    const duplicate = findDuplicateKey(doc, location.range.offset);
    if (duplicate) {
      const [name, first, second] = duplicate;
      const related: RelatedInfo[] = [{ message: `"${name}" is first set here`, location: rangeLocation(file, first) }];
      return errorAt('yaml-duplicate-key', `Duplicate key "${name}": each key may appear only once in a map.`, rangeLocation(file, second), related);
    }
  }
  return errorAt(yamlCode(e), `Invalid YAML: ${yamlMessage(e)}.`, location);
}

function yamlCode(e: YAMLError): string {
  return `yaml-${e.code.toLowerCase().replace(/_/g, '-')}`;
}

function yamlErrorLocation(file: SourceFile, e: YAMLError): Location {
  const [start, end] = e.pos;
  const text = file.contents;
  // errors about indentation start in the indentation: point at the line's content instead
  if (/[ \t]/.test(text[start] ?? '')) {
    const lineEnd = text.indexOf('\n', start) === -1 ? text.length : text.indexOf('\n', start);
    const content = text.slice(start, lineEnd);
    const lead = content.length - content.trimStart().length;
    if (lead < content.length) return { file, range: { offset: start + lead, length: content.trim().length } };
  }
  return { file, range: { offset: start, length: Math.max(end - start, 1) } };
}

/** yaml's wording, with a hint where it names the symptom rather than the usual cause */
function yamlMessage(e: YAMLError): string {
  const message = sentence(e.message);
  const indentation = e.code === 'BAD_INDENT' || /without - indicator|same column|indentation/i.test(e.message);
  return indentation ? `${message} (check this line's indentation)` : message;
}

/** [key, first key's range, duplicate key's range] for the duplicate key starting at `offset` */
function findDuplicateKey(doc: Document, offset: number): [string, readonly number[], readonly number[]] | undefined {
  let found: [string, readonly number[], readonly number[]] | undefined;
  visit(doc, {
    Map(_, map) {
      const seen = new Map<unknown, readonly number[]>();
      for (const pair of map.items) {
        const key = isScalar(pair.key) ? pair.key : undefined;
        if (!key?.range) continue;
        const first = seen.get(key.value);
        if (first && key.range[0] === offset) {
          found = [String(key.value), first, key.range];
          return visit.BREAK;
        }
        if (!first) seen.set(key.value, key.range);
      }
      return undefined;
    },
  });
  return found;
}

/** the Location of a path's key or value in the file, or undefined when the node has no source (created by an override) */
export function nodeLocation(doc: Document, file: SourceFile, path: JsonPath, target: IssueTarget): Location | undefined {
  const pair = path.length > 0 ? pairAt(doc, path) : undefined;
  const keyLocation = pair && isNode(pair.key) && pair.key.range ? rangeLocation(file, pair.key.range) : undefined;
  if (target === 'key') return keyLocation;
  const node = path.length === 0 ? doc.contents : doc.getIn(path, true);
  const range = isNode(node) ? node.range : undefined;
  // a map's problems read best at its key (`calibration:`), an empty value (`stages:`) only has its key
  const preferKey = target === 'container' && isMap(node) && !node.flow;
  if (keyLocation && (preferKey || !range || range[1] <= range[0])) return keyLocation;
  if (range) return rangeLocation(file, range);
  if (path.length === 0) return { file, range: { offset: 0, length: 0 } };
  return undefined;
}

function pairAt(doc: Document, path: JsonPath): Pair | undefined {
  const parent = path.length === 1 ? doc.contents : doc.getIn(path.slice(0, -1), true);
  const last = path[path.length - 1];
  if (!isMap(parent)) return undefined;
  return parent.items.find((p) => (isScalar(p.key) ? p.key.value === last : p.key === last));
}

function rangeLocation(file: SourceFile, range: readonly number[]): Location {
  const start = range[0] ?? 0;
  const end = range[1] ?? start;
  return { file, range: { offset: start, length: end - start } };
}

function sentence(message: string): string {
  const trimmed = message.trim().replace(/\.$/, '');
  return trimmed.charAt(0).toLowerCase() + trimmed.slice(1);
}
