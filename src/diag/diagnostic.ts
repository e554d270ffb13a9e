// Diagnostics are data: what went wrong, where (a byte range of a source text), and optionally other
// places that explain it. Only print.ts turns them into text.

/** a text a diagnostic can point into: a recipe file, or a synthetic source such as one `--set` argument */
export interface SourceFile {
  /** absolute path of a file, or a label such as `--set` for text that came from the command line */
  readonly path: string;
  readonly contents: string;
}

export interface Range {
  readonly offset: number;
  readonly length: number;
}

export interface Location {
  readonly file: SourceFile;
  readonly range: Range;
}

export type Severity = 'error' | 'warning';

export interface RelatedInfo {
  readonly message: string;
  readonly location: Location;
}

export interface Diagnostic {
  readonly severity: Severity;
  /** kebab-case reason, stable for tests and --json consumers: `unknown-property`, `yaml-duplicate-key` ... */
  readonly code: string;
  readonly message: string;
  readonly location: Location;
  readonly related?: readonly RelatedInfo[];
}

export function errorAt(code: string, message: string, location: Location, related?: RelatedInfo[]): Diagnostic {
  return related && related.length > 0
    ? { severity: 'error', code, message, location, related }
    : { severity: 'error', code, message, location };
}

export function warningAt(code: string, message: string, location: Location): Diagnostic {
  return { severity: 'warning', code, message, location };
}
