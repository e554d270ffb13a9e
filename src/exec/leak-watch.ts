// File handles left to the garbage collector. Node closes a FileHandle it collects and warns
// ("Closing file descriptor N on garbage collection", DEP0137: "In the future, an error will be thrown").
// With QUANTFORGE_STRICT_WARNINGS=1 (the test suite sets it) the CLI and the compute worker force a garbage
// collection after their work and turn such warnings into a failure, so a leak fails a test instead of
// scrolling past in its output.

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export const STRICT_WARNINGS_ENV = 'QUANTFORGE_STRICT_WARNINGS';

export function strictWarnings(): boolean {
  return process.env[STRICT_WARNINGS_ENV] === '1';
}

/** DEP0137 and its companion "Closing file descriptor N on garbage collection" */
export function isLeakWarning(w: Error): boolean {
  return (w as { code?: string }).code === 'DEP0137' || /Closing file descriptor \d+ on garbage collection/.test(w.message);
}

let gc: (() => void) | undefined;

/** a full garbage collection, without --expose-gc on the command line */
function collectGarbage(): void {
  if (!gc) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  }
  gc();
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** records leak warnings from the moment it is made */
export class LeakWatch {
  readonly #seen: string[] = [];
  readonly #listener = (w: Error): void => {
    if (isLeakWarning(w)) this.#seen.push(w.message);
  };

  constructor() {
    process.on('warning', this.#listener);
  }

  /** collect garbage, let Node emit its warnings, and return (and forget) the leaks seen so far */
  async collect(): Promise<string[]> {
    for (let i = 0; i < 2; i++) {
      collectGarbage();
      await tick();
      await tick();
    }
    return this.#seen.splice(0);
  }

  stop(): void {
    process.off('warning', this.#listener);
  }
}

/** one line for a failure message: how many handles, and Node's words for the first */
export function describeLeaks(leaks: readonly string[]): string {
  const fds = leaks.filter((l) => l.startsWith('Closing file descriptor'));
  const first = fds[0] ?? leaks[0] ?? '';
  return `${Math.max(fds.length, 1)} file handle${fds.length > 1 ? 's were' : ' was'} left to the garbage collector instead of closed (${first})`;
}
