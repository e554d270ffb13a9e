// YAML nodes built for a converted recipe keep the source range of the llm-compressor text they came from,
// so the loader's diagnostics (schema, plan) point at the llm-compressor file's lines. A node made up by
// the converter (a stage's `kind`) borrows the range of the key it stands for (`GPTQModifier`).

import { isAlias, isMap, isScalar, isSeq, Pair, Scalar, YAMLMap, YAMLSeq, type Document, type Node } from 'yaml';
import type { Location, SourceFile } from '../../diag/diagnostic.js';
import { positionOf } from '../../diag/position.js';

/** a node's `[start, value-end, node-end]` in the source text; undefined for nodes made up here */
export type SourceRange = readonly number[] | null | undefined;

function place<T extends { range?: [number, number, number] | null }>(node: T, range: SourceRange): T {
  if (range && range.length >= 2) node.range = [range[0]!, range[1]!, range[2] ?? range[1]!];
  return node;
}

export function scalarAt<T>(value: T, range: SourceRange): Scalar<T> {
  return place(new Scalar(value), range);
}

export function mapAt(range: SourceRange): YAMLMap {
  return place(new YAMLMap(), range);
}

export function seqAt(range: SourceRange, items: readonly Node[] = []): YAMLSeq {
  const seq = place(new YAMLSeq(), range);
  seq.items.push(...items);
  return seq;
}

/** appends `key: value` to a map; the key node gets `keyRange` */
export function put(map: YAMLMap, key: string, keyRange: SourceRange, value: Node): void {
  map.items.push(new Pair(scalarAt(key, keyRange), value));
}

/** the value under `key`, or undefined */
export function entry(map: YAMLMap, key: string): Pair<Scalar<string>, Node> | undefined {
  return map.items.find((p) => isScalar(p.key) && p.key.value === key) as Pair<Scalar<string>, Node> | undefined;
}

/** aliases (`*anchor`) replaced by the node they name */
export function deref(doc: Document, node: unknown): Node | undefined {
  if (isAlias(node)) return (node.resolve(doc) as Node | undefined) ?? undefined;
  return isScalar(node) || isMap(node) || isSeq(node) ? node : undefined;
}

/** the text a key was written as, or undefined for keys that are not plain strings */
export function keyName(pair: Pair): string | undefined {
  return isScalar(pair.key) && typeof pair.key.value === 'string' ? pair.key.value : undefined;
}

/** the value-end of the node as a Location in `file` (a map's whole span would underline many lines) */
export function locate(file: SourceFile, node: { range?: SourceRange } | null | undefined): Location {
  const range = node?.range;
  const start = range?.[0] ?? 0;
  const end = range?.[1] ?? start;
  return { file, range: { offset: start, length: Math.max(end - start, 0) } };
}

/** the 1-based line of a node in `file` */
export function lineOf(file: SourceFile, node: { range?: SourceRange } | null | undefined): number {
  return positionOf(file, node?.range?.[0] ?? 0).line;
}
