// The shape every CLI command shares: declared options (node:util parseArgs), help text, and a run function
// that returns an exit code. Commands write through `Io`; only src/cli.ts touches process.exit.

import type { Diagnostic } from '../diag/diagnostic.js';
import { ReasonedError } from '../diag/failure.js';

export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** replace the transient status line (a terminal only); undefined clears it */
  status(text: string | undefined): void;
  readonly isTTY: boolean;
}

export type OptionSpec = { type: 'string' | 'boolean'; multiple?: boolean; short?: string; default?: string | boolean };

export interface CommandResult {
  code: 0 | 1 | 2;
  /** recipe/plan/usage diagnostics for cli.ts to print */
  diagnostics?: Diagnostic[];
}

export interface Command {
  name: string;
  summary: string;
  usage: string;
  /** option lines shown by --help, already formatted */
  help: string;
  options: Record<string, OptionSpec>;
  allowPositionals: number;
  run(args: { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] }, io: Io): Promise<CommandResult>;
}

export class UsageError extends ReasonedError<'usage'> {
  constructor(message: string) {
    super('usage', message);
  }
}

export function intOption(values: Record<string, unknown>, name: string, min = 1): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} expects an integer ≥ ${min}, got ${JSON.stringify(raw)}`);
  return n;
}

export function stringOption(values: Record<string, unknown>, name: string): string | undefined {
  const raw = values[name];
  return typeof raw === 'string' ? raw : undefined;
}
