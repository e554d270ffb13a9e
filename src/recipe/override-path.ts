// The path syntax shared by --set and sweep keys: names joined by dots, list indices in brackets,
// `stages[1].iters`, `evaluate.perplexity.max_windows`. Each segment keeps its Location for messages.

import { errorAt, type Diagnostic, type Location, type SourceFile } from '../diag/diagnostic.js';
import type { Result } from '../diag/result.js';
import type { JsonPath } from './types.js';

export interface ParsedPath {
  readonly path: JsonPath;
  /** where each segment (`stages`, `[1]`, `iters`) is written */
  readonly segments: readonly Location[];
}

const NAME = /[A-Za-z_][A-Za-z0-9_-]*/y;
const INDEX = /\[(\d+)\]/y;

/** parses `text`, which sits at `offset` in `file` */
export function parseOverridePath(text: string, file: SourceFile, offset = 0): Result<ParsedPath, Diagnostic[]> {
  const path: (string | number)[] = [];
  const segments: Location[] = [];
  const at = (start: number, length: number): Location => ({ file, range: { offset: offset + start, length } });
  const syntax = (start: number, message: string): Result<ParsedPath, Diagnostic[]> => ({
    ok: false,
    error: [errorAt('override-syntax', message, at(start, Math.max(1, text.length - start)))],
  });
  if (text.length === 0) return syntax(0, 'Missing path: expected a path such as stages[0].iters.');
  let i = 0;
  while (i < text.length) {
    let afterDot = false;
    if (path.length > 0) {
      if (text[i] === '.') {
        i++;
        afterDot = true;
      } else if (text[i] !== '[') {
        return syntax(i, `Unexpected ${JSON.stringify(text[i])} in path "${text}": expected "." or "[index]".`);
      }
    }
    if (!afterDot && text[i] === '[') {
      INDEX.lastIndex = i;
      const match = INDEX.exec(text);
      if (!match || path.length === 0) {
        return syntax(i, `Invalid index in path "${text}": expected [<integer>] after a name, as in stages[0].`);
      }
      path.push(Number(match[1]));
      segments.push(at(i, match[0].length));
      i += match[0].length;
      continue;
    }
    NAME.lastIndex = i;
    const match = NAME.exec(text);
    if (!match) {
      if (i >= text.length) return syntax(i - 1, `Missing property name after "." in path "${text}".`);
      return syntax(i, `Invalid property name in path "${text}": expected letters, digits, "_" or "-", starting with a letter.`);
    }
    path.push(match[0]);
    segments.push(at(i, match[0].length));
    i += match[0].length;
  }
  return { ok: true, value: { path, segments } };
}
