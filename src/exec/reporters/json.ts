// The machine-readable reporter (`--json`, and the one tests use): every event as one JSON object per
// line, exactly as the executor emitted it. The executor emits `summary` last, so the last line is the
// summary.

import type { Writable } from 'node:stream';
import type { Reporter, RunEvent } from '../events.js';

export class JsonReporter implements Reporter {
  readonly #stream: Writable;

  constructor(stream: Writable) {
    this.#stream = stream;
  }

  onEvent(e: RunEvent): void {
    this.#stream.write(`${JSON.stringify(e)}\n`);
  }

  /** resolves once everything written so far has been handed to the stream's destination */
  close(): Promise<void> {
    return new Promise((resolve) => this.#stream.write('', () => resolve()));
  }
}
