// The behaviour every step store must have, run against each backend (wireit cache-common.ts):
// `describeStoreContract('dir', makeDirHarness)`, `describeStoreContract('s3', makeS3Harness)`. A harness
// gives the store under test, the same store as another machine sees it (nothing in its local copy), and
// ways to damage an entry where the store keeps it (the entry's files; the bucket's objects).

import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { CACHE_FORMAT, computeKey, type Digest, type Json, type KeyRecord } from '../../src/cache/key.js';
import type { CacheEntry, StepStore } from '../../src/cache/step-store.js';

export interface StoreHarness {
  store: StepStore;
  /** the same store as another process on another machine sees it: its own, empty local directory */
  other(): Promise<StepStore>;
  /** damage an entry where the store keeps it */
  damage: {
    removeFile(e: CacheEntry, rel: string): Promise<void>;
    writeFile(e: CacheEntry, rel: string, data: string): Promise<void>;
    readMeta(e: CacheEntry): Promise<string>;
    writeMeta(e: CacheEntry, text: string): Promise<void>;
    removeMeta(e: CacheEntry): Promise<void>;
  };
  close?(): Promise<void>;
}
/** `work` is an empty directory of the test's own */
export type MakeHarness = (work: string, onCorrupt: (problem: string) => void) => Promise<StoreHarness>;

const sha = (data: string) => createHash('sha256').update(data).digest('hex');

export function recordFor(params: Json, kind = 'gptq'): KeyRecord {
  return { cacheFormat: CACHE_FORMAT, kind, version: 1, params, inputs: {}, files: {}, tools: { quantforge: 'test' } };
}

export function describeStoreContract(name: string, make: MakeHarness): void {
  describe(`step store contract: ${name}`, () => {
    let work: string;
    let h: StoreHarness;
    let cache: StepStore;
    let problems: string[];

    beforeEach(async () => {
      work = await mkdtemp(join(tmpdir(), 'qf-cache-'));
      problems = [];
      h = await make(work, (p) => problems.push(p));
      cache = h.store;
    });
    afterEach(async () => {
      await h.close?.();
      await rm(work, { recursive: true, force: true });
    });

    /** commit an entry whose artifacts are `files` (relative path → text) */
    async function put(params: Json, files: Record<string, string>, result: Json = null, kind = 'gptq'): Promise<CacheEntry> {
      const record = recordFor(params, kind);
      const pending = await cache.begin(kind, computeKey(record));
      for (const [rel, text] of Object.entries(files)) {
        await mkdir(join(pending.dir, rel, '..'), { recursive: true });
        await writeFile(join(pending.dir, rel), text);
      }
      return pending.commit({ record, stepId: `stage1.${kind}/layer.0`, result, elapsedMs: 12 });
    }
    const keyOf = (params: Json, kind = 'gptq') => computeKey(recordFor(params, kind));

    test('misses when nothing was stored', async () => {
      expect(await cache.lookup('gptq', keyOf({ a: 1 }))).toBeUndefined();
      expect(await cache.inspect('gptq', keyOf({ a: 1 }))).toEqual({ status: 'miss' });
      expect(await cache.get('gptq', keyOf({ a: 1 }))).toBeUndefined();
    });

    test('hits after a commit, with file sizes and digests and the step result in meta', async () => {
      await put({ a: 1 }, { 'layer.safetensors': 'tensor bytes', 'sub/quant.json': '{}' }, { error: 0.25 });
      const hit = await cache.lookup('gptq', keyOf({ a: 1 }));
      expect(hit?.meta.files).toEqual({
        'layer.safetensors': { size: 12, sha256: sha('tensor bytes') },
        'sub/quant.json': { size: 2, sha256: sha('{}') },
      });
      expect(hit?.meta.result).toEqual({ error: 0.25 });
      expect(hit?.meta.record).toEqual(recordFor({ a: 1 }));
      expect(hit?.meta.stepId).toBe('stage1.gptq/layer.0');
      expect(await readFile(join(hit!.dir, 'sub/quant.json'), 'utf8')).toBe('{}');
      expect(await cache.verify(hit!)).toEqual({ ok: true });
    });

    test('another process finds the entry and gets its files as local files', async () => {
      await put({ a: 1 }, { 'layer.safetensors': 'tensor bytes', 'sub/quant.json': '{}' }, { error: 0.25 });
      const other = await h.other();
      const hit = await other.lookup('gptq', keyOf({ a: 1 }));
      expect(hit?.meta.result).toEqual({ error: 0.25 });
      expect(await other.verify(hit!)).toEqual({ ok: true });
      expect(await readFile(join(hit!.dir, 'layer.safetensors'), 'utf8')).toBe('tensor bytes');
      const got = await other.get('gptq', keyOf({ a: 1 }));
      expect(await readFile(join(got!.dir, 'sub/quant.json'), 'utf8')).toBe('{}');
    });

    test('keeps entries of different keys and kinds apart', async () => {
      await put({ a: 1 }, { f: 'one' });
      await put({ a: 1 }, { f: 'rtn' }, null, 'rtn');
      expect(await cache.lookup('gptq', keyOf({ a: 2 }))).toBeUndefined();
      const rtn = await (await h.other()).get('rtn', keyOf({ a: 1 }, 'rtn'));
      expect(await readFile(join(rtn!.dir, 'f'), 'utf8')).toBe('rtn');
    });

    test('refuses to commit under a key that is not the key of the record', async () => {
      const pending = await cache.begin('gptq', keyOf({ a: 1 }));
      await expect(pending.commit({ record: recordFor({ a: 2 }), stepId: 's', result: null, elapsedMs: 0 })).rejects.toMatchObject({
        reason: 'cache-key-mismatch',
      });
      expect(await cache.lookup('gptq', keyOf({ a: 1 }))).toBeUndefined();
    });

    test('refuses artifacts named like the entry bookkeeping', async () => {
      await expect(put({ a: 1 }, { 'meta.json': '{}' })).rejects.toMatchObject({ reason: 'cache-reserved-name' });
      expect(await cache.lookup('gptq', keyOf({ a: 1 }))).toBeUndefined();
    });

    test('abort leaves no entry and no temp dir', async () => {
      const pending = await cache.begin('gptq', keyOf({ a: 1 }));
      await writeFile(join(pending.dir, 'partial'), 'x');
      await pending.abort();
      expect(await cache.lookup('gptq', keyOf({ a: 1 }))).toBeUndefined();
      expect(await (await h.other()).lookup('gptq', keyOf({ a: 1 }))).toBeUndefined();
      await expect(stat(pending.dir)).rejects.toThrow(/ENOENT/);
    });

    test('keeps the first of two commits of one key and drops the second', async () => {
      const record = recordFor({ a: 1 });
      const [p1, p2] = [await cache.begin('gptq', computeKey(record)), await cache.begin('gptq', computeKey(record))];
      await writeFile(join(p1.dir, 'f'), 'same');
      await writeFile(join(p2.dir, 'f'), 'same');
      const first = await p1.commit({ record, stepId: 'first', result: 1, elapsedMs: 0 });
      const second = await p2.commit({ record, stepId: 'second', result: 2, elapsedMs: 0 });
      expect(second.meta.stepId).toBe('first');
      expect(second.dir).toBe(first.dir);
      await expect(stat(p2.dir)).rejects.toThrow(/ENOENT/);
      expect((await (await h.other()).lookup('gptq', computeKey(record)))?.meta.stepId).toBe('first');
    });

    test('a commit replaces an existing entry that is damaged', async () => {
      const old = await put({ a: 1 }, { f: 'good' });
      await h.damage.writeFile(old, 'f', 'evil');
      const fresh = await put({ a: 1 }, { f: 'good' }, 'second');
      expect(fresh.meta.result).toBe('second');
      expect(await cache.verify(fresh)).toEqual({ ok: true });
      const seen = await (await h.other()).get('gptq', old.key);
      expect(seen?.meta.result).toBe('second');
    });

    describe('damaged entries', () => {
      test('a missing file is a miss, and the problem is reported', async () => {
        const e = await put({ a: 1 }, { f: 'data' });
        await h.damage.removeFile(e, 'f');
        expect(await (await h.other()).lookup('gptq', e.key)).toBeUndefined();
        expect(problems).toEqual(['file "f" is missing']);
      });

      test('a file of the wrong size is a miss', async () => {
        const e = await put({ a: 1 }, { f: 'data' });
        await h.damage.writeFile(e, 'f', 'da');
        expect(await (await h.other()).inspect('gptq', e.key)).toEqual({ status: 'corrupt', problem: 'file "f" has 2 bytes, meta.json says 4' });
      });

      test('a file with the right size but other bytes passes lookup and fails verify', async () => {
        const e = await put({ a: 1 }, { f: 'data' });
        await h.damage.writeFile(e, 'f', 'DATA');
        const other = await h.other();
        const hit = await other.lookup('gptq', e.key);
        expect(hit).toBeDefined();
        const verdict = await other.verify(hit!);
        expect(verdict.ok).toBe(false);
        expect(!verdict.ok && verdict.problem).toContain(`file "f" has sha256 ${sha('DATA')}, meta.json says ${sha('data')}`);
      });

      test('get evicts an entry whose bytes are wrong and reports a miss', async () => {
        const e = await put({ a: 1 }, { f: 'data' });
        await h.damage.writeFile(e, 'f', 'DATA');
        const other = await h.other();
        expect(await other.get('gptq', e.key)).toBeUndefined();
        expect(problems).toHaveLength(1);
        expect(await (await h.other()).inspect('gptq', e.key)).toEqual({ status: 'miss' });
      });

      test.each<[string, (meta: Record<string, unknown>) => string]>([
        ['is not JSON', () => '{"key": '],
        ['names another key', (m) => JSON.stringify({ ...m, key: 'f'.repeat(64) })],
        ['has a record that hashes to another key', (m) => JSON.stringify({ ...m, record: recordFor({ a: 2 }) })],
        ['lists an unsafe path', (m) => JSON.stringify({ ...m, files: { '../escape': { size: 1, sha256: sha('x') } } })],
      ])('an entry whose meta.json %s is a miss', async (_what, damage) => {
        const e = await put({ a: 1 }, { f: 'data' });
        const meta = JSON.parse(await h.damage.readMeta(e)) as Record<string, unknown>;
        await h.damage.writeMeta(e, damage(meta));
        const other = await h.other();
        expect((await other.inspect('gptq', e.key)).status).toBe('corrupt');
        expect(await other.lookup('gptq', e.key)).toBeUndefined();
      });

      test('an entry without meta.json is a miss', async () => {
        const e = await put({ a: 1 }, { f: 'data' });
        await h.damage.removeMeta(e);
        expect(await (await h.other()).lookup('gptq', e.key)).toBeUndefined();
      });

      test('evict removes the entry and logs the reason', async () => {
        const e = await put({ a: 1 }, { f: 'data' });
        await cache.evict('gptq', e.key, 'sha256 mismatch');
        expect(await cache.inspect('gptq', e.key)).toEqual({ status: 'miss' });
        expect(await (await h.other()).inspect('gptq', e.key)).toEqual({ status: 'miss' });
        expect(await readFile(join(cache.root, 'evictions.log'), 'utf8')).toMatch(new RegExp(`gptq/${e.key} sha256 mismatch`));
        await expect(cache.evict('gptq', e.key, 'again')).resolves.toBeUndefined();
      });
    });

    test('rejects kinds and keys that are not safe directory names', async () => {
      await expect(cache.lookup('../x', keyOf({}))).rejects.toMatchObject({ reason: 'cache-invalid-name' });
      await expect(cache.lookup('tmp', keyOf({}))).rejects.toMatchObject({ reason: 'cache-invalid-name' });
      await expect(cache.begin('gptq', '../../etc' as Digest)).rejects.toMatchObject({ reason: 'cache-invalid-name' });
    });

    test('list and totalSize see every sound entry', async () => {
      await put({ a: 1 }, { f: 'xxxx' });
      await put({ a: 2 }, { f: 'yy', g: 'z' });
      const listed = await (await h.other()).list();
      expect(listed.map((e) => e.meta.result)).toHaveLength(2);
      expect(new Set(listed.map((e) => e.key))).toEqual(new Set([keyOf({ a: 1 }), keyOf({ a: 2 })]));
      const metaBytes = await Promise.all(listed.map(async (e) => (await h.damage.readMeta(e)).length));
      expect(await cache.totalSize()).toBe(7 + metaBytes.reduce((a, b) => a + b, 0));
    });

    test('verifyAll re-hashes every entry and names the damaged ones', async () => {
      const good = await put({ a: 1 }, { f: 'data' });
      const bad = await put({ a: 2 }, { f: 'data', g: 'more' });
      await h.damage.writeFile(bad, 'g', 'MORE');
      const report = await (await h.other()).verifyAll();
      expect(report.entries).toBe(2);
      expect(report.damaged).toEqual([{ kind: 'gptq', key: bad.key, problem: expect.stringContaining(`file "g" has sha256 ${sha('MORE')}`) }]);
      expect(report.damaged.map((d) => d.key)).not.toContain(good.key);
    });

    describe('gc and clean', () => {
      test('gc removes entries until the rest fits', async () => {
        const entries = [await put({ a: 1 }, { f: 'x'.repeat(1000) }), await put({ a: 2 }, { f: 'x'.repeat(1000) }), await put({ a: 3 }, { f: 'x'.repeat(1000) })];
        const budget = (await cache.totalSize()) - 1;
        const report = await cache.gc({ maxBytes: budget });
        expect(report.removed).toHaveLength(1);
        expect(report.remainingBytes).toBeLessThanOrEqual(budget);
        const other = await h.other();
        const left = await Promise.all(entries.map((e) => other.lookup('gptq', e.key)));
        expect(left.filter((e) => e === undefined)).toHaveLength(1);
        expect(report.removed[0]!.key).toBe(entries[left.findIndex((e) => e === undefined)]!.key);
      });

      test('gc keeps everything when the store is within budget', async () => {
        await put({ a: 1 }, { f: 'x' });
        const report = await cache.gc({ maxBytes: 1 << 30 });
        expect(report.removed).toEqual([]);
        expect(await cache.list()).toHaveLength(1);
      });

      test('gc removes damaged entries', async () => {
        const e = await put({ a: 1 }, { f: 'data' });
        await h.damage.removeFile(e, 'f');
        const report = await cache.gc({ maxBytes: 1 << 30 });
        expect(report.removed).toMatchObject([{ key: e.key, reason: expect.stringMatching(/^damaged: file "f" is missing/) }]);
        expect(await (await h.other()).inspect('gptq', e.key)).toEqual({ status: 'miss' });
      });

      test('clean removes every entry', async () => {
        await put({ a: 1 }, { f: 'data' });
        await put({ a: 1 }, { f: 'data' }, null, 'rtn');
        const report = await cache.clean();
        expect(report.entriesRemoved).toBe(2);
        expect(await cache.list()).toEqual([]);
        expect(await cache.totalSize()).toBe(0);
        expect(await (await h.other()).lookup('rtn', keyOf({ a: 1 }, 'rtn'))).toBeUndefined();
      });
    });

    describe('applyTo', () => {
      test('copies the artifact files, not the bookkeeping, into the output directory', async () => {
        const e = await put({ a: 1 }, { 'model.safetensors': 'w', 'tok/tokenizer.json': 't' });
        const dest = join(work, 'out', 'model');
        await cache.applyTo(e, dest);
        expect((await readdir(dest, { recursive: true })).sort()).toEqual(['model.safetensors', 'tok', 'tok/tokenizer.json']);
        expect(await readFile(join(dest, 'tok/tokenizer.json'), 'utf8')).toBe('t');
      });

      test('applies an entry that another process committed', async () => {
        await put({ a: 1 }, { 'model.safetensors': 'w' });
        const other = await h.other();
        const e = await other.lookup('gptq', keyOf({ a: 1 }));
        await other.applyTo(e!, join(work, 'out'));
        expect(await readFile(join(work, 'out', 'model.safetensors'), 'utf8')).toBe('w');
      });

      test('replaces a previous output as a whole and leaves no staging dirs', async () => {
        const dest = join(work, 'out');
        await mkdir(dest, { recursive: true });
        await writeFile(join(dest, 'stale-shard.safetensors'), 'old');
        const e = await put({ a: 1 }, { 'new.safetensors': 'new' });
        const before = (await readdir(work)).filter((n) => n !== 'out');
        await cache.applyTo(e, dest);
        expect(await readdir(dest)).toEqual(['new.safetensors']);
        expect((await readdir(work)).filter((n) => n !== 'out')).toEqual(before);
      });

      test('replaces the target of a symlinked output directory and keeps the link', async () => {
        await mkdir(join(work, 'big-disk', 'out'), { recursive: true });
        await writeFile(join(work, 'big-disk', 'out', 'old'), 'old');
        await symlink(join(work, 'big-disk', 'out'), join(work, 'out'));
        await cache.applyTo(await put({ a: 1 }, { f: 'data' }), join(work, 'out'));
        expect((await lstat(join(work, 'out'))).isSymbolicLink()).toBe(true);
        expect(await readdir(join(work, 'big-disk', 'out'))).toEqual(['f']);
      });

      test('copies, so editing the output does not damage the store', async () => {
        const e = await put({ a: 1 }, { f: 'data' });
        await cache.applyTo(e, join(work, 'out'));
        await writeFile(join(work, 'out', 'f'), 'DATA');
        expect(await cache.verify(e)).toEqual({ ok: true });
      });

      test('refuses to replace a file, or a directory that holds the working directory', async () => {
        const e = await put({ a: 1 }, { f: 'data' });
        await writeFile(join(work, 'file'), 'keep me');
        await expect(cache.applyTo(e, join(work, 'file'))).rejects.toMatchObject({ reason: 'cache-output-blocked' });
        await expect(cache.applyTo(e, join(process.cwd(), '..'))).rejects.toMatchObject({ reason: 'cache-output-blocked' });
        expect(await readFile(join(work, 'file'), 'utf8')).toBe('keep me');
      });
    });
  });
}
