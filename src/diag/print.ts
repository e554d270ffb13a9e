// The one place diagnostics become text:
//
//   ❌ recipes/gptq-w4a16.yaml:9:5 Unknown property "groupsize" in stage "gptq". Did you mean "group_size"?
//           groupsize: 128
//           ~~~~~~~~~
//
// and the plain `file:line:col` form used by --json output.

import { isAbsolute, relative } from 'node:path';
import type { Diagnostic, Location, SourceFile } from './diagnostic.js';
import { lineAt, sourcePosition, type SourcePosition } from './position.js';

export interface PrintOptions {
  /** file paths print relative to this directory (default: process.cwd()) */
  readonly cwd?: string;
  /** ANSI colours for terminals (default: false) */
  readonly color?: boolean;
}

const ICON = { error: '❌', warning: '⚠️' } as const;
const INDENT = 4;

export function printDiagnostic(diagnostic: Diagnostic, options: PrintOptions = {}): string {
  const paint = painter(options.color ?? false);
  const tone = diagnostic.severity === 'error' ? paint.red : paint.yellow;
  let out = `${ICON[diagnostic.severity]} ${formatLocation(diagnostic.location, options.cwd)} ${paint.bold(diagnostic.message)}\n`;
  out += drawSquiggle(diagnostic.location, INDENT, tone);
  for (const related of diagnostic.related ?? []) {
    out += `${' '.repeat(INDENT)}${formatLocation(related.location, options.cwd)} ${related.message}\n`;
    out += drawSquiggle(related.location, 2 * INDENT, tone);
  }
  return out;
}

export function printDiagnostics(diagnostics: readonly Diagnostic[], options: PrintOptions = {}): string {
  return diagnostics.map((d) => printDiagnostic(d, options)).join('');
}

/** the source line holding the start of the range, and `~` under the part of the range on that line */
export function drawSquiggle(location: Location, indent: number, tone: (s: string) => string = (s) => s): string {
  const { offset, length } = location.range;
  const line = lineAt(location.file, offset);
  const column = offset - line.start;
  const width = Math.max(1, Math.min(length, line.text.length - column));
  const pad = ' '.repeat(indent);
  return `${pad}${line.text}\n${pad}${' '.repeat(column)}${tone('~'.repeat(width))}\n`;
}

/** `path:line:col`, 1-based, the path relative to `cwd` when the file is a real (absolute) path */
export function formatLocation(location: Location, cwd?: string): string {
  return formatPosition(sourcePosition(location), cwd);
}

/** a SourcePosition (an event's location) as `path:line:col` */
export function formatPosition(p: SourcePosition, cwd?: string): string {
  return `${displayPath({ path: p.path, contents: '' }, cwd)}:${p.line}:${p.column}`;
}

export function displayPath(file: SourceFile, cwd: string = process.cwd()): string {
  if (!isAbsolute(file.path)) return file.path;
  const rel = relative(cwd, file.path);
  return rel === '' ? file.path : rel.split('\\').join('/');
}

export interface DiagnosticJson {
  severity: Diagnostic['severity'];
  code: string;
  message: string;
  /** `path:line:col` */
  location: string;
  related?: { message: string; location: string }[];
}

export function diagnosticToJson(diagnostic: Diagnostic, options: PrintOptions = {}): DiagnosticJson {
  const json: DiagnosticJson = {
    severity: diagnostic.severity,
    code: diagnostic.code,
    message: diagnostic.message,
    location: formatLocation(diagnostic.location, options.cwd),
  };
  if (diagnostic.related && diagnostic.related.length > 0) {
    json.related = diagnostic.related.map((r) => ({
      message: r.message,
      location: formatLocation(r.location, options.cwd),
    }));
  }
  return json;
}

function painter(enabled: boolean) {
  const wrap = (open: number, close: number) => (s: string) => (enabled ? `\x1b[${open}m${s}\x1b[${close}m` : s);
  return { red: wrap(31, 39), yellow: wrap(33, 39), bold: wrap(1, 22) };
}
