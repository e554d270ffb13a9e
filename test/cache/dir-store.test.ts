// The dir store: the store contract, plus what only a directory has (least-recently-used order from the
// `last-used` marker, temp dirs of crashed runs, a directory without meta.json reported as damaged).

import { mkdir, readFile, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { DirStore } from '../../src/cache/dir-store.js';
import { computeKey, type Json } from '../../src/cache/key.js';
import type { CacheEntry } from '../../src/cache/step-store.js';
import { describeStoreContract, recordFor, type MakeHarness } from './cache-contract.js';

export const makeDirHarness: MakeHarness = async (work, onCorrupt) => {
  const root = join(work, 'cache');
  const open = (): DirStore => new DirStore(root, { onCorrupt: (_kind, _key, problem) => onCorrupt(problem) });
  return {
    store: open(),
    other: async () => open(),
    damage: {
      removeFile: (e, rel) => rm(join(e.dir, rel)),
      writeFile: (e, rel, data) => writeFile(join(e.dir, rel), data),
      readMeta: (e) => readFile(join(e.dir, 'meta.json'), 'utf8'),
      writeMeta: (e, text) => writeFile(join(e.dir, 'meta.json'), text),
      removeMeta: (e) => rm(join(e.dir, 'meta.json')),
    },
  };
};

describeStoreContract('dir', makeDirHarness);

describe('dir store', () => {
  let work: string;
  let store: DirStore;
  beforeEach(async () => {
    work = await mkdtemp(join(tmpdir(), 'qf-dir-store-'));
    store = new DirStore(join(work, 'cache'));
  });
  afterEach(() => rm(work, { recursive: true, force: true }));

  async function put(params: Json, text: string): Promise<CacheEntry> {
    const record = recordFor(params);
    const pending = await store.begin('gptq', computeKey(record));
    await writeFile(join(pending.dir, 'f'), text);
    return pending.commit({ record, stepId: 's', result: null, elapsedMs: 0 });
  }

  async function usedAt(e: CacheEntry, minutesAgo: number): Promise<void> {
    const t = new Date(Date.now() - minutesAgo * 60_000);
    await utimes(join(e.dir, 'last-used'), t, t);
  }

  test('gc removes least recently used entries first, and a lookup counts as a use', async () => {
    const a = await put({ a: 1 }, 'x'.repeat(1000));
    const b = await put({ a: 2 }, 'x'.repeat(1000));
    const c = await put({ a: 3 }, 'x'.repeat(1000));
    await usedAt(a, 30);
    await usedAt(b, 20);
    await usedAt(c, 10);
    await store.lookup('gptq', a.key);
    const report = await store.gc({ maxBytes: (await store.totalSize()) - 1 });
    expect(report.removed.map((r) => r.key)).toEqual([b.key]);
    expect(await store.lookup('gptq', a.key)).toBeDefined();
  });

  test('gc removes temp dirs of crashed runs', async () => {
    await mkdir(join(store.root, 'tmp', 'pending-gptq-999999999-deadbeef'), { recursive: true });
    const report = await store.gc({ maxBytes: 1 << 30 });
    expect(report.tempDirsRemoved).toBe(1);
    expect(await readdir(join(store.root, 'tmp'))).toEqual([]);
  });

  test('an entry directory without meta.json is reported as damaged', async () => {
    const e = await put({ a: 1 }, 'data');
    await rm(join(e.dir, 'meta.json'));
    expect(await store.inspect('gptq', e.key)).toEqual({ status: 'corrupt', problem: 'meta.json is missing' });
  });

  test('its location is its root', () => {
    expect(store.location).toBe(store.root);
  });
});
