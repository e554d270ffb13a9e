// The directory store: one directory per step result, <root>/<kind>/<key>/, holding the step's artifact
// files and meta.json. Entries are built in <root>/tmp/ and renamed into place, so an entry directory is
// either complete or absent; a damaged one is detected and reported, never used. The root may be on a
// network filesystem shared by several machines: renames are atomic on the server, locks (lock-file.ts)
// carry owner, host and a heartbeat, and temp names never collide between hosts.

import { appendFile, mkdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { replaceDirWithCopy } from './apply-output.js';
import { CacheError } from './cache-error.js';
import { checkRelPath, LAST_USED_FILE, META_FILE, parseMeta, type EntryMeta, type FileRecord } from './entry-meta.js';
import { sha256File } from './file-digest.js';
import { errnoCode, listTree, removeTree, uniqueSuffix } from './fs-atomic.js';
import { cleanCache, gcCache, RESERVED_ROOT_NAMES, scanEntries, type CleanReport, type GcOptions, type GcReport } from './gc.js';
import { computeKey, isDigest, type Digest } from './key.js';
import { withRun, withStepLock, type RunOptions, type WaitOptions } from './lock.js';
import {
  pendingEntry,
  verifiedEntry,
  type CacheEntry,
  type CommitFields,
  type DamagedEntry,
  type Inspection,
  type PendingEntry,
  type StepStore,
  type StoreOptions,
  type Verdict,
  type VerifyReport,
} from './step-store.js';

export class DirStore implements StepStore {
  readonly root: string;
  readonly #opts: StoreOptions;

  constructor(root: string, opts: StoreOptions = {}) {
    this.root = root;
    this.#opts = opts;
  }

  get location(): string {
    return this.root;
  }

  /** the entry for (kind, key) if meta.json is sound and every listed file exists with its size; marks it used */
  async lookup(kind: string, key: Digest): Promise<CacheEntry | undefined> {
    const found = await this.inspect(kind, key);
    if (found.status === 'corrupt') this.#opts.onCorrupt?.(kind, key, found.problem);
    if (found.status !== 'hit') return undefined;
    await this.markUsed(found.entry);
    return found.entry;
  }

  /** like `lookup`, but says why an existing entry is unusable, and does not mark it used */
  async inspect(kind: string, key: Digest): Promise<Inspection> {
    const dir = this.entryDir(kind, key);
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

  get(kind: string, key: Digest): Promise<CacheEntry | undefined> {
    return verifiedEntry(this, kind, key, this.#opts.onCorrupt);
  }

  /** a fresh, private directory under <root>/tmp/ for a step to write its artifacts into */
  async begin(kind: string, key: Digest): Promise<PendingEntry> {
    this.entryDir(kind, key);
    const dir = await this.tempDir(`pending-${kind}`);
    return pendingEntry(
      dir,
      async (fields) => this.install(kind, key, dir, await this.seal(kind, key, dir, fields)),
      () => rm(dir, { recursive: true, force: true }),
    );
  }

  /** remove an entry found damaged: renamed out of <root>/<kind>/ first, so nobody sees it half-deleted */
  async evict(kind: string, key: Digest, reason: string): Promise<void> {
    if (await this.removeEntry(kind, key)) await this.logEviction(kind, key, reason);
  }

  /** remove an entry directory (renamed away first); false when there was none */
  removeEntry(kind: string, key: Digest): Promise<boolean> {
    return removeTree(this.entryDir(kind, key), join(this.root, 'tmp'));
  }

  /** mark an entry used now, for least-recently-used gc */
  markUsed(entry: CacheEntry): Promise<void> {
    return touch(join(entry.dir, LAST_USED_FILE));
  }

  /** append to <root>/evictions.log */
  async logEviction(kind: string, key: Digest, reason: string): Promise<void> {
    await mkdir(this.root, { recursive: true });
    await appendFile(join(this.root, 'evictions.log'), `${new Date().toISOString()} ${kind}/${key} ${reason}\n`);
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

  /** re-hash every sound entry; an entry directory whose meta.json is missing or damaged is reported too */
  async verifyAll(opts: { onEntry?: (done: number, total: number) => void } = {}): Promise<VerifyReport> {
    const scanned = await scanEntries(this.root);
    const entries = scanned.flatMap((s) => (s.meta ? [{ kind: s.kind, key: s.key, dir: s.dir, meta: s.meta }] : []));
    const damaged: DamagedEntry[] = scanned.flatMap((s) => (s.meta ? [] : [{ kind: s.kind, key: s.key, problem: s.problem ?? 'meta.json is damaged' }]));
    for (const [i, e] of entries.entries()) {
      const v = await this.verify(e);
      if (!v.ok) damaged.push({ kind: e.kind, key: e.key, problem: v.problem });
      opts.onEntry?.(i + 1, entries.length);
    }
    return { entries: entries.length, damaged };
  }

  /** drop stale temp dirs and damaged entries, then least-recently-used entries until under `maxBytes` */
  gc(opts: GcOptions): Promise<GcReport> {
    return gcCache(this.root, this.#waitOptions(opts));
  }

  /** remove every entry, temp dir and the file digest cache */
  clean(opts: Omit<GcOptions, 'maxBytes'> = {}): Promise<CleanReport> {
    return cleanCache(this.root, this.#waitOptions(opts));
  }

  /** copy an entry's artifact files (not its bookkeeping) and `written` to `destDir`, replacing it as a whole */
  applyTo(entry: CacheEntry, destDir: string, written: Readonly<Record<string, string>> = {}): Promise<void> {
    return replaceDirWithCopy(entry.dir, destDir, { files: Object.keys(entry.meta.files), written, protectedDirs: [this.root] });
  }

  withStepLock<T>(key: Digest, fn: () => Promise<T>, opts: WaitOptions = {}): Promise<T> {
    return withStepLock(this.root, key, fn, this.#waitOptions(opts));
  }

  withRun<T>(fn: () => Promise<T>, opts: RunOptions = {}): Promise<T> {
    return withRun(this.root, fn, this.#waitOptions(opts));
  }

  // The building blocks of a commit, public for stores layered on this one (the S3 read-through copy).

  /** <root>/<kind>/<key>, after checking that kind and key are safe directory names */
  entryDir(kind: string, key: Digest): string {
    if (!/^[a-z][a-z0-9-]*$/.test(kind) || RESERVED_ROOT_NAMES.includes(kind)) {
      throw new CacheError('cache-invalid-name', `invalid step kind "${kind}" for a cache directory: expected lowercase letters, digits and "-", not one of ${RESERVED_ROOT_NAMES.join(', ')}`);
    }
    if (!isDigest(key)) throw new CacheError('cache-invalid-name', `invalid cache key "${key}": expected 64 lowercase hex digits`);
    return join(this.root, kind, key);
  }

  /** a new empty directory <root>/tmp/<prefix>-<pid>-<rand> (gc removes those of crashed processes) */
  async tempDir(prefix: string): Promise<string> {
    const dir = join(this.root, 'tmp', `${prefix}-${uniqueSuffix()}`);
    await mkdir(dir, { recursive: true });
    return dir;
  }

  /** check the artifacts a step left in `dir` and digest them: the meta.json they will be committed with */
  async seal(kind: string, key: Digest, dir: string, fields: CommitFields): Promise<EntryMeta> {
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
    return { key, record: fields.record, stepId: fields.stepId, files, result: fields.result, createdAt: new Date().toISOString(), elapsedMs: fields.elapsedMs };
  }

  /**
   * Write `meta` into `dir` (which holds exactly its files) and rename `dir` into place as the entry. If
   * a sound entry is there already (another process committed the same key), that one is kept and
   * returned; a damaged one is replaced.
   */
  async install(kind: string, key: Digest, dir: string, meta: EntryMeta): Promise<CacheEntry> {
    const finalDir = this.entryDir(kind, key);
    await writeFile(join(dir, META_FILE), metaText(meta));
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

  #waitOptions<O extends WaitOptions>(opts: O): O {
    const onWarn = this.#opts.onWarn;
    return opts.onStale || !onWarn ? opts : { ...opts, onStale: onWarn };
  }
}

/** the text of a meta.json: the same bytes in every store, so sizes and digests compare across them */
export function metaText(meta: EntryMeta): string {
  return `${JSON.stringify(meta, null, 2)}\n`;
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
