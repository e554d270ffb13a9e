// The local content-addressed store: one directory per step result, <root>/<kind>/<key>/, holding the
// step's artifact files and meta.json. Entries are built in <root>/tmp/ and renamed into place, so an
// entry directory is either complete or absent; a damaged one is detected and reported, never used.

import { mkdir, readFile, rename, rm, stat, utimes, writeFile, appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { replaceDirWithCopy } from './apply-output.js';
import { CacheError } from './cache-error.js';
import { checkRelPath, LAST_USED_FILE, META_FILE, parseMeta, type EntryMeta, type FileRecord } from './entry-meta.js';
import { sha256File } from './file-digest.js';
import { errnoCode, listTree, removeTree, uniqueSuffix } from './fs-atomic.js';
import { cleanCache, gcCache, RESERVED_ROOT_NAMES, scanEntries, type CleanReport, type GcOptions, type GcReport } from './gc.js';
import { computeKey, isDigest, type Digest, type Json, type KeyRecord } from './key.js';

/** where the cache lives unless `--cache-dir` or `QUANTFORGE_CACHE` says otherwise */
export const DEFAULT_CACHE_DIR = '.quantforge/cache';

/** the cache root: the `--cache-dir` flag, else `$QUANTFORGE_CACHE`, else {@link DEFAULT_CACHE_DIR} */
export function resolveCacheDir(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return flag || env.QUANTFORGE_CACHE || DEFAULT_CACHE_DIR;
}

export interface CacheEntry {
  kind: string;
  key: Digest;
  /** absolute or root-relative path of <root>/<kind>/<key> */
  dir: string;
  meta: EntryMeta;
}

/** what a step adds to its entry when it commits; kind and key come from `begin` */
export interface CommitFields {
  record: KeyRecord;
  stepId: string;
  result: Json;
  elapsedMs: number;
}

export interface PendingEntry {
  /** an empty directory of its own to write the step's artifacts into */
  readonly dir: string;
  /** seal the artifacts into the entry <root>/<kind>/<key>; if another process got there first, theirs is kept */
  commit(fields: CommitFields): Promise<CacheEntry>;
  /** throw the artifacts away (the step failed) */
  abort(): Promise<void>;
}

export type Verdict = { ok: true } | { ok: false; problem: string };
export type Inspection = { status: 'miss' } | { status: 'hit'; entry: CacheEntry } | { status: 'corrupt'; problem: string };

export interface LocalCacheOptions {
  /** told about every damaged entry `lookup` skips, so the run can warn about it */
  onCorrupt?: (kind: string, key: Digest, problem: string) => void;
}

export class LocalCache {
  readonly root: string;
  readonly #opts: LocalCacheOptions;

  constructor(root: string, opts: LocalCacheOptions = {}) {
    this.root = root;
    this.#opts = opts;
  }

  /** the entry for (kind, key) if meta.json is sound and every listed file exists with its size; marks it used */
  async lookup(kind: string, key: Digest): Promise<CacheEntry | undefined> {
    const found = await this.inspect(kind, key);
    if (found.status === 'corrupt') this.#opts.onCorrupt?.(kind, key, found.problem);
    if (found.status !== 'hit') return undefined;
    await touch(join(found.entry.dir, LAST_USED_FILE));
    return found.entry;
  }

  /** like `lookup`, but says why an existing entry is unusable, and does not mark it used */
  async inspect(kind: string, key: Digest): Promise<Inspection> {
    const dir = this.#entryDir(kind, key);
    let text: string;
    try {
      text = await readFile(join(dir, META_FILE), 'utf8');
    } catch (e) {
      if (errnoCode(e) !== 'ENOENT') return { status: 'corrupt', problem: `meta.json cannot be read (${errnoCode(e)})` };
      const exists = await stat(dir).then(() => true, () => false);
      return exists ? { status: 'corrupt', problem: 'meta.json is missing' } : { status: 'miss' };
    }
    const parsed = parseMeta(text, kind, key);
    if (!parsed.ok) return { status: 'corrupt', problem: parsed.problem };
    for (const [rel, f] of Object.entries(parsed.meta.files)) {
      const problem = await checkSize(join(dir, rel), rel, f);
      if (problem) return { status: 'corrupt', problem };
    }
    return { status: 'hit', entry: { kind, key, dir, meta: parsed.meta } };
  }

  /** re-hash every artifact file of an entry against meta.json (reads every byte) */
  async verify(entry: CacheEntry): Promise<Verdict> {
    for (const [rel, f] of Object.entries(entry.meta.files)) {
      const path = join(entry.dir, rel);
      const problem = await checkSize(path, rel, f);
      if (problem) return { ok: false, problem };
      const digest = await sha256File(path);
      if (digest !== f.sha256) return { ok: false, problem: `file "${rel}" has sha256 ${digest}, meta.json says ${f.sha256}` };
    }
    return { ok: true };
  }

  /** a fresh, private directory under <root>/tmp/ for a step to write its artifacts into */
  async begin(kind: string, key: Digest): Promise<PendingEntry> {
    const finalDir = this.#entryDir(kind, key);
    const dir = join(this.root, 'tmp', `pending-${kind}-${uniqueSuffix()}`);
    await mkdir(dir, { recursive: true });
    let settled = false;
    const settle = () => {
      if (settled) throw new Error(`pending cache entry ${dir} was already committed or aborted`);
      settled = true;
    };
    return {
      dir,
      commit: async (fields) => {
        settle();
        try {
          return await this.#commit(kind, key, dir, finalDir, fields);
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      },
      abort: async () => {
        settle();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }

  /** remove an entry found damaged: renamed out of <root>/<kind>/ first, so nobody sees it half-deleted */
  async evict(kind: string, key: Digest, reason: string): Promise<void> {
    const removed = await removeTree(this.#entryDir(kind, key), join(this.root, 'tmp'));
    if (removed) {
      await appendFile(join(this.root, 'evictions.log'), `${new Date().toISOString()} ${kind}/${key} ${reason}\n`);
    }
  }

  /** every entry whose meta.json is sound (damaged ones are left to gc) */
  async list(): Promise<CacheEntry[]> {
    const scanned = await scanEntries(this.root);
    return scanned.flatMap((s) => (s.meta ? [{ kind: s.kind, key: s.key, dir: s.dir, meta: s.meta }] : []));
  }

  /** bytes on disk of all entries, damaged ones included (temp dirs are not counted) */
  async totalSize(): Promise<number> {
    return (await scanEntries(this.root)).reduce((sum, s) => sum + s.bytes, 0);
  }

  /** drop stale temp dirs and damaged entries, then least-recently-used entries until under `maxBytes` */
  gc(opts: GcOptions): Promise<GcReport> {
    return gcCache(this.root, opts);
  }

  /** remove every entry, temp dir and the file digest cache */
  clean(opts: Omit<GcOptions, 'maxBytes'> = {}): Promise<CleanReport> {
    return cleanCache(this.root, opts);
  }

  /** copy an entry's artifact files (not its bookkeeping) to `destDir`, replacing it as a whole */
  applyTo(entry: CacheEntry, destDir: string): Promise<void> {
    return replaceDirWithCopy(entry.dir, Object.keys(entry.meta.files), destDir, [this.root]);
  }

  async #commit(kind: string, key: Digest, dir: string, finalDir: string, fields: CommitFields): Promise<CacheEntry> {
    const computed = computeKey(fields.record);
    if (computed !== key || fields.record.kind !== kind) {
      throw new CacheError(
        'cache-key-mismatch',
        `cannot commit ${fields.stepId}: its key record is for ${fields.record.kind}/${computed}, expected ${kind}/${key}`,
      );
    }
    const { files: tree, odd } = await listTree(dir);
    if (odd.length > 0) {
      throw new CacheError('cache-invalid-name', `step ${fields.stepId} left non-regular files (${odd.join(', ')}): artifacts must be plain files`);
    }
    const files: Record<string, FileRecord> = {};
    for (const f of tree) {
      const problem = checkRelPath(f.rel);
      if (problem) throw new CacheError('cache-reserved-name', `step ${fields.stepId} wrote ${problem}`);
      files[f.rel] = { size: f.size, sha256: await sha256File(join(dir, f.rel)) };
    }
    const meta: EntryMeta = { key, record: fields.record, stepId: fields.stepId, files, result: fields.result, createdAt: new Date().toISOString(), elapsedMs: fields.elapsedMs };
    await writeFile(join(dir, META_FILE), `${JSON.stringify(meta, null, 2)}\n`);
    await writeFile(join(dir, LAST_USED_FILE), '');
    await mkdir(join(this.root, kind), { recursive: true });
    for (let attempt = 0; ; attempt++) {
      try {
        await rename(dir, finalDir);
        return { kind, key, dir: finalDir, meta };
      } catch (e) {
        if (!['ENOTEMPTY', 'EEXIST'].includes(errnoCode(e) ?? '') || attempt >= 3) throw e;
      }
      // another process committed the same key first: keep theirs if it is sound
      const theirs = await this.inspect(kind, key);
      if (theirs.status === 'hit') {
        const verdict = await this.verify(theirs.entry);
        if (verdict.ok) return theirs.entry;
        await this.evict(kind, key, `replaced on commit: ${verdict.problem}`);
      } else if (theirs.status === 'corrupt') {
        await this.evict(kind, key, `replaced on commit: ${theirs.problem}`);
      }
    }
  }

  #entryDir(kind: string, key: Digest): string {
    if (!/^[a-z][a-z0-9-]*$/.test(kind) || RESERVED_ROOT_NAMES.includes(kind)) {
      throw new CacheError('cache-invalid-name', `invalid step kind "${kind}" for a cache directory: expected lowercase letters, digits and "-", not one of ${RESERVED_ROOT_NAMES.join(', ')}`);
    }
    if (!isDigest(key)) throw new CacheError('cache-invalid-name', `invalid cache key "${key}": expected 64 lowercase hex digits`);
    return join(this.root, kind, key);
  }
}

async function checkSize(path: string, rel: string, f: FileRecord): Promise<string | undefined> {
  try {
    const st = await stat(path);
    if (!st.isFile()) return `"${rel}" is not a regular file`;
    if (st.size !== f.size) return `file "${rel}" has ${st.size} bytes, meta.json says ${f.size}`;
    return undefined;
  } catch {
    return `file "${rel}" is missing`;
  }
}

async function touch(path: string): Promise<void> {
  const now = new Date();
  try {
    await utimes(path, now, now);
  } catch {
    await writeFile(path, '').catch(() => undefined);
  }
}
