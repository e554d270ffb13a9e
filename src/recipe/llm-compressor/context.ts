// What every conversion function shares: the source file (for locations), the document (for aliases) and
// the list the diagnostics go to.

import type { Document, Node } from 'yaml';
import { errorAt, warningAt, type Diagnostic, type SourceFile } from '../../diag/diagnostic.js';
import { locate } from './nodes.js';

export class ConvertContext {
  readonly errors: Diagnostic[] = [];
  readonly warnings: Diagnostic[] = [];
  constructor(
    readonly doc: Document,
    readonly file: SourceFile,
  ) {}

  /** "not supported by quantforge: <what>", at `node` */
  unsupported(node: Node | null | undefined, what: string): void {
    this.errors.push(errorAt('llm-compressor-unsupported', `not supported by quantforge: ${what}.`, locate(this.file, node)));
  }

  /** a value quantforge cannot read (a map where a list belongs ...) */
  invalid(node: Node | null | undefined, message: string): void {
    this.errors.push(errorAt('llm-compressor-invalid', `${message}.`, locate(this.file, node)));
  }

  warn(node: Node | null | undefined, message: string): void {
    this.warnings.push(warningAt('llm-compressor-differs', `${message}.`, locate(this.file, node)));
  }
}
