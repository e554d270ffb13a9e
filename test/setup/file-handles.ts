// Test setup (vitest setupFiles): a file handle left to the garbage collector fails the test file.
//  - QUANTFORGE_STRICT_WARNINGS=1 for everything the tests start: the CLI and its compute worker force a
//    garbage collection after their work and exit 1 (fail the step) on DEP0137 / "Closing file descriptor".
//  - In this process, every FileHandle opened through node:fs/promises is tracked with the stack that opened
//    it; after the file's tests, one still open is a failure naming that stack, and so is any GC-close warning
//    Node emitted (LeakWatch forces a collection first).

import { createRequire, syncBuiltinESMExports } from 'node:module';
import type { FileHandle } from 'node:fs/promises';
import { afterAll } from 'vitest';
import { describeLeaks, LeakWatch, STRICT_WARNINGS_ENV } from '../../src/exec/leak-watch.js';

process.env[STRICT_WARNINGS_ENV] = '1';

interface Tracker {
  open: Map<FileHandle, string>;
}

const KEY = Symbol.for('quantforge.test.fileHandles');
const holder = globalThis as unknown as Record<symbol, Tracker | undefined>;

function tracker(): Tracker {
  const existing = holder[KEY];
  if (existing) return existing;
  const t: Tracker = { open: new Map() };
  holder[KEY] = t;
  const fsp = createRequire(import.meta.url)('node:fs/promises') as { open: (...args: unknown[]) => Promise<FileHandle> };
  const original = fsp.open;
  fsp.open = async function open(...args: unknown[]): Promise<FileHandle> {
    const stack = (new Error().stack ?? '').split('\n').slice(2, 9).join('\n');
    const handle = await original.apply(this, args);
    t.open.set(handle, `${String(args[0])}\n${stack}`);
    const close = handle.close.bind(handle);
    handle.close = async () => {
      t.open.delete(handle);
      return close();
    };
    return handle;
  };
  syncBuiltinESMExports();
  return t;
}

const handles = tracker();
const before = new Set(handles.open.keys());
const watch = new LeakWatch();

afterAll(async () => {
  const leaked = await watch.collect();
  watch.stop();
  const stillOpen = [...handles.open].filter(([h]) => !before.has(h) && h.fd !== -1);
  // closed here, so they cannot surface as garbage-collection warnings in the next file of this worker
  for (const [h] of stillOpen) await h.close().catch(() => undefined);
  const problems: string[] = [];
  if (leaked.length > 0) problems.push(describeLeaks(leaked));
  for (const [, where] of stillOpen) problems.push(`a file handle is still open at the end of the file's tests, opened on ${where}`);
  if (problems.length > 0) throw new Error(`file handles not closed explicitly:\n${problems.join('\n')}`);
});
