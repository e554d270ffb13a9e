// The behaviour every step cache must have, run against each implementation (wireit cache-common.ts):
// `describeCacheContract('local', makeLocalCache)`.

import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, truncate, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { CACHE_FORMAT, computeKey, type Digest, type Json, type KeyRecord } from '../../src/cache/key.js';
import type { CacheEntry, LocalCache } from '../../src/cache/store.js';

export type CacheUnderTest = Pick<
  LocalCache,
  'root' | 'lookup' | 'inspect' | 'verify' | 'begin' | 'evict' | 'list' | 'totalSize' | 'gc' | 'clean' | 'applyTo'
>;
export type MakeCache = (root: string, onCorrupt: (problem: string) => void) => CacheUnderTest;

const sha = (data: string) => createHash('sha256').update(data).digest('hex');

export function recordFor(params: Json, kind = 'gptq'): KeyRecord {
  return { cacheFormat: CACHE_FORMAT, kind, version: 1, params, inputs: {}, files: {}, tools: { quantforge: 'test' } };
}

export function describeCacheContract(name: string, make: MakeCache): void {
  describe(`step cache contract: ${name}`, () => {
    let work: string;
    let cache: CacheUnderTest;
    let problems: string[];

    beforeEach(async () => {
      work = await mkdtemp(join(tmpdir(), 'qf-cache-'));
      problems = [];
      cache = make(join(work, 'cache'), (p) => problems.push(p));
    });
    afterEach(async () => {
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

    test('keeps entries of different keys and kinds apart', async () => {
      await put({ a: 1 }, { f: 'one' });
      await put({ a: 1 }, { f: 'rtn' }, null, 'rtn');
      expect(await cache.lookup('gptq', keyOf({ a: 2 }))).toBeUndefined();
      const rtn = await cache.lookup('rtn', keyOf({ a: 1 }, 'rtn'));
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
    });

    test('a commit replaces an existing entry that is damaged', async () => {
      const old = await put({ a: 1 }, { f: 'good' });
      await writeFile(join(old.dir, 'f'), 'evil');
      const fresh = await put({ a: 1 }, { f: 'good' }, 'second');
      expect(fresh.meta.result).toBe('second');
      expect(await cache.verify(fresh)).toEqual({ ok: true });
    });

    describe('damaged entries', () => {
      test('a missing file is a miss, and the problem is reported', async () => {
        const e = await put({ a: 1 }, { f: 'data' });
        await rm(join(e.dir, 'f'));
        expect(await cache.lookup('gptq', e.key)).toBeUndefined();
        expect(problems).toEqual(['file "f" is missing']);
      });

      test('a file of the wrong size is a miss', async () => {
        const e = await put({ a: 1 }, { f: 'data' });
        await truncate(join(e.dir, 'f'), 2);
        expect(await cache.inspect('gptq', e.key)).toEqual({ status: 'corrupt', problem: 'file "f" has 2 bytes, meta.json says 4' });
      });

      test('a file with the right size but other bytes passes lookup and fails verify', async () => {
        const e = await put({ a: 1 }, { f: 'data' });
        await writeFile(join(e.dir, 'f'), 'DATA');
        const hit = await cache.lookup('gptq', e.key);
        expect(hit).toBeDefined();
        expect(await cache.verify(hit!)).toEqual({ ok: false, problem: `file "f" has sha256 ${sha('DATA')}, meta.json says ${sha('data')}` });
      });

      test.each<[string, (meta: Record<string, unknown>) => string]>([
        ['is not JSON', () => '{"key": '],
        ['names another key', (m) => JSON.stringify({ ...m, key: 'f'.repeat(64) })],
        ['has a record that hashes to another key', (m) => JSON.stringify({ ...m, record: recordFor({ a: 2 }) })],
        ['lists an unsafe path', (m) => JSON.stringify({ ...m, files: { '../escape': { size: 1, sha256: sha('x') } } })],
      ])('an entry whose meta.json %s is a miss', async (_what, damage) => {
        const e = await put({ a: 1 }, { f: 'data' });
        const meta = JSON.parse(await readFile(join(e.dir, 'meta.json'), 'utf8')) as Record<string, unknown>;
        await writeFile(join(e.dir, 'meta.json'), damage(meta));
        const found = await cache.inspect('gptq', e.key);
        expect(found.status).toBe('corrupt');
        expect(await cache.lookup('gptq', e.key)).toBeUndefined();
      });

      test('an entry directory without meta.json is a miss', async () => {
        const e = await put({ a: 1 }, { f: 'data' });
        await rm(join(e.dir, 'meta.json'));
        expect(await cache.inspect('gptq', e.key)).toEqual({ status: 'corrupt', problem: 'meta.json is missing' });
      });

      test('evict removes the entry and logs the reason', async () => {
        const e = await put({ a: 1 }, { f: 'data' });
        await cache.evict('gptq', e.key, 'sha256 mismatch');
        expect(await cache.inspect('gptq', e.key)).toEqual({ status: 'miss' });
        expect(await readFile(join(cache.root, 'evictions.log'), 'utf8')).toMatch(new RegExp(`gptq/${e.key} sha256 mismatch\\n$`));
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
      const listed = await cache.list();
      expect(listed.map((e) => e.meta.result)).toHaveLength(2);
      expect(new Set(listed.map((e) => e.key))).toEqual(new Set([keyOf({ a: 1 }), keyOf({ a: 2 })]));
      const metaBytes = await Promise.all(listed.map(async (e) => (await stat(join(e.dir, 'meta.json'))).size));
      expect(await cache.totalSize()).toBe(7 + metaBytes.reduce((a, b) => a + b, 0));
    });

    describe('gc and clean', () => {
      async function usedAt(e: CacheEntry, minutesAgo: number) {
        const t = new Date(Date.now() - minutesAgo * 60_000);
        await utimes(join(e.dir, 'last-used'), t, t);
      }

      test('gc removes least recently used entries until the rest fits', async () => {
        const a = await put({ a: 1 }, { f: 'x'.repeat(1000) });
        const b = await put({ a: 2 }, { f: 'x'.repeat(1000) });
        const c = await put({ a: 3 }, { f: 'x'.repeat(1000) });
        await usedAt(a, 30);
        await usedAt(b, 20);
        await usedAt(c, 10);
        // a lookup hit makes `a` the most recently used
        await cache.lookup('gptq', a.key);
        const budget = (await cache.totalSize()) - 1;
        const report = await cache.gc({ maxBytes: budget });
        expect(report.removed.map((r) => r.key)).toEqual([b.key]);
        expect(report.remainingBytes).toBeLessThanOrEqual(budget);
        expect(await cache.lookup('gptq', b.key)).toBeUndefined();
        expect(await cache.lookup('gptq', a.key)).toBeDefined();
      });

      test('gc keeps everything when the cache is within budget', async () => {
        await put({ a: 1 }, { f: 'x' });
        const report = await cache.gc({ maxBytes: 1 << 30 });
        expect(report.removed).toEqual([]);
        expect(await cache.list()).toHaveLength(1);
      });

      test('gc removes damaged entries and temp dirs of crashed runs', async () => {
        const e = await put({ a: 1 }, { f: 'data' });
        await rm(join(e.dir, 'f'));
        await mkdir(join(cache.root, 'tmp', 'pending-gptq-999999999-deadbeef'), { recursive: true });
        const report = await cache.gc({ maxBytes: 1 << 30 });
        expect(report.removed).toMatchObject([{ key: e.key, reason: 'damaged: file "f" is missing or has the wrong size' }]);
        expect(report.tempDirsRemoved).toBe(1);
        expect(await readdir(join(cache.root, 'tmp'))).toEqual([]);
      });

      test('clean removes every entry', async () => {
        await put({ a: 1 }, { f: 'data' });
        await put({ a: 1 }, { f: 'data' }, null, 'rtn');
        const report = await cache.clean();
        expect(report.entriesRemoved).toBe(2);
        expect(await cache.list()).toEqual([]);
        expect(await cache.totalSize()).toBe(0);
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

      test('replaces a previous output as a whole and leaves no staging dirs', async () => {
        const dest = join(work, 'out');
        await mkdir(dest, { recursive: true });
        await writeFile(join(dest, 'stale-shard.safetensors'), 'old');
        await cache.applyTo(await put({ a: 1 }, { 'new.safetensors': 'new' }), dest);
        expect(await readdir(dest)).toEqual(['new.safetensors']);
        expect(await readdir(work)).toEqual(['cache', 'out']);
      });

      test('replaces the target of a symlinked output directory and keeps the link', async () => {
        await mkdir(join(work, 'big-disk', 'out'), { recursive: true });
        await writeFile(join(work, 'big-disk', 'out', 'old'), 'old');
        await symlink(join(work, 'big-disk', 'out'), join(work, 'out'));
        await cache.applyTo(await put({ a: 1 }, { f: 'data' }), join(work, 'out'));
        expect((await lstat(join(work, 'out'))).isSymbolicLink()).toBe(true);
        expect(await readdir(join(work, 'big-disk', 'out'))).toEqual(['f']);
      });

      test('copies, so editing the output does not damage the cache', async () => {
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
