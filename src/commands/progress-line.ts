// A single self-updating progress line on stderr for direct commands (eval, generate); plain lines every few
// seconds when stderr is not a terminal.

import type { Io } from './command.js';

export function progressLine(io: Io, label: string): { update: (done: number, total: number) => void; done: () => void } {
  const start = performance.now();
  let last = 0;
  let shown = false;
  return {
    update(done, total) {
      const now = performance.now();
      if (now - last < (io.isTTY ? 200 : 5000) && done < total) return;
      last = now;
      const elapsed = (now - start) / 1000;
      const eta = done > 0 ? (elapsed * (total - done)) / done : 0;
      const text = `${label} ${Math.floor((100 * done) / total)}% (${done}/${total}) ${elapsed.toFixed(0)} s elapsed, ~${eta.toFixed(0)} s left`;
      if (io.isTTY) {
        io.status(text);
        shown = true;
      } else io.err(text);
    },
    done() {
      if (shown) io.status(undefined);
    },
  };
}
