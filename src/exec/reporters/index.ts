// Picks how a run is shown: JSON lines when asked (`--json`), the listr2 tree in an interactive terminal,
// plain lines everywhere else (pipes, files, CI=true).

import type { Writable } from 'node:stream';
import type { Reporter } from '../events.js';
import { JsonReporter } from './json.js';
import { PlainReporter } from './plain.js';

export interface ReporterChoice {
  /** `--json`: one event per line, the last one the summary */
  json?: boolean;
  /** whether `stream` is an interactive terminal; default `stream.isTTY` */
  tty?: boolean;
  /** default process.stdout */
  stream?: Writable;
  /** default process.env; `CI=true` (or `1`) forces plain output */
  env?: NodeJS.ProcessEnv;
}

/** async: listr2 is imported only when the terminal tree is shown (a --json or CI run never loads it) */
export async function createReporter(choice: ReporterChoice = {}): Promise<Reporter> {
  const stream = choice.stream ?? process.stdout;
  if (choice.json) return new JsonReporter(stream);
  const env = choice.env ?? process.env;
  const ci = env.CI !== undefined && env.CI !== '' && env.CI !== 'false' && env.CI !== '0';
  const tty = choice.tty ?? (stream as Partial<NodeJS.WriteStream>).isTTY === true;
  if (tty && !ci) {
    const { ListrReporter } = await import('./listr.js');
    return new ListrReporter({ stream });
  }
  return new PlainReporter({ stream });
}
