// Byte offsets to 1-based line/column, computed from the text itself so any SourceFile can be printed.

import type { Location, SourceFile } from './diagnostic.js';

export interface Position {
  /** 1-based */
  readonly line: number;
  /** 1-based, in UTF-16 code units like the offsets */
  readonly column: number;
}

export function positionOf(file: SourceFile, offset: number): Position {
  const text = file.contents;
  const end = Math.max(0, Math.min(offset, text.length));
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < end; i = text.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, column: end - lineStart + 1 };
}

/** the text of the line holding `offset`, without its newline, and where that line starts */
export function lineAt(file: SourceFile, offset: number): { text: string; start: number } {
  const text = file.contents;
  const at = Math.max(0, Math.min(offset, text.length));
  // lastIndexOf clamps a negative start to 0, so at offset 0 it would find a newline at 0 and skip the first line
  const start = at === 0 ? 0 : text.lastIndexOf('\n', at - 1) + 1;
  const newline = text.indexOf('\n', at);
  const end = newline === -1 ? text.length : newline;
  return { text: text.slice(start, end).replace(/\r$/, ''), start };
}

export function startOf(location: Location): Position {
  return positionOf(location.file, location.range.offset);
}

/** a location as plain JSON data, for events: the file's path and the 1-based line and column of its start */
export interface SourcePosition {
  readonly path: string;
  readonly line: number;
  readonly column: number;
}

export function sourcePosition(location: Location): SourcePosition {
  return { path: location.file.path, ...startOf(location) };
}
