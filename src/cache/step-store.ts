// The step store: where step results live, addressed by (kind, key). Two backends implement it: a
// directory (dir-store.ts: local disk or a shared network filesystem) and an S3-compatible bucket
// (s3-store.ts, with a directory in front of it as a local read-through copy). Whatever the backend,
// a step reads its inputs and writes its artifacts as local files: `entry.dir` is always a local path.
//
// Consistency, for every backend: an entry is immutable once committed; it is published by one atomic
// act (a directory rename; the upload of meta.json after every file), so a crash mid-commit leaves no
// entry; every file is digested in meta.json and re-hashed before a step reads it, so a damaged entry is
// reported and rebuilt, never used. Locks only save work (two processes computing one step); no lock is
// needed for correctness.

import type { EntryMeta } from './entry-meta.js';
import type { CleanReport, GcOptions, GcReport } from './gc.js';
import type { Digest, Json, KeyRecord } from './key.js';
import type { RunOptions, WaitOptions } from './lock.js';

export interface CacheEntry {
  kind: string;
  key: Digest;
  /**
   * <local root>/<kind>/<key>: the entry's files, once `verify` (or `get`) said ok. For a dir store they
   * are there from the start; an S3 store downloads them into its read-through copy on `verify`.
   */
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
  /** an empty local directory of its own to write the step's artifacts into */
  readonly dir: string;
  /** seal the artifacts into the entry (kind, key); if another process got there first, theirs is kept */
  commit(fields: CommitFields): Promise<CacheEntry>;
  /** throw the artifacts away (the step failed) */
  abort(): Promise<void>;
}

export type Verdict = { ok: true } | { ok: false; problem: string };
export type Inspection = { status: 'miss' } | { status: 'hit'; entry: CacheEntry } | { status: 'corrupt'; problem: string };

export interface DamagedEntry {
  kind: string;
  key: Digest;
  problem: string;
}

export interface VerifyReport {
  /** sound entries whose every file was re-hashed */
  entries: number;
  damaged: DamagedEntry[];
}

export interface StoreOptions {
  /** told about every damaged entry `lookup` skips, so the run can warn about it */
  onCorrupt?: (kind: string, key: Digest, problem: string) => void;
  /** told when a stale lock is taken over, an upload is retried, and the like */
  onWarn?: (message: string) => void;
}

export interface StepStore {
  /**
   * the local directory the store works in: the dir store's own root, or the S3 store's read-through
   * copy. Runs keep their history and the source-file digest cache there too.
   */
  readonly root: string;
  /** the store as the user named it: a directory or `s3://bucket/prefix` (for messages and `cache ls`) */
  readonly location: string;

  /** the entry if its meta.json is sound and every listed file exists with its size (no file is read) */
  lookup(kind: string, key: Digest): Promise<CacheEntry | undefined>;
  /** like `lookup`, but says why an existing entry is unusable */
  inspect(kind: string, key: Digest): Promise<Inspection>;
  /**
   * check every file against its sha256 in meta.json; when ok, the files are at `entry.dir` (an S3
   * store downloads them there, hashing as they arrive, and keeps nothing that fails)
   */
  verify(entry: CacheEntry): Promise<Verdict>;
  /** lookup + verify: the entry as verified local files; a damaged one is evicted and reported as a miss */
  get(kind: string, key: Digest): Promise<CacheEntry | undefined>;
  /** a fresh local directory for a step's artifacts, committed as (kind, key) or aborted */
  begin(kind: string, key: Digest): Promise<PendingEntry>;
  /** remove an entry found damaged (everywhere the store keeps it) and log why */
  evict(kind: string, key: Digest, reason: string): Promise<void>;
  /**
   * copy an entry's artifact files (not its bookkeeping) to `destDir`, with `written` (relative path →
   * content, e.g. the lock file) beside them, replacing it as a whole: the new directory is complete
   * before it takes the old one's place
   */
  applyTo(entry: CacheEntry, destDir: string, written?: Readonly<Record<string, string>>): Promise<void>;

  /** every entry whose meta.json is sound (damaged ones are left to gc) */
  list(): Promise<CacheEntry[]>;
  /** bytes of all entries in the store, damaged ones included */
  totalSize(): Promise<number>;
  /** re-hash every file of every entry where the store keeps it */
  verifyAll(opts?: { onEntry?: (done: number, total: number) => void }): Promise<VerifyReport>;
  /** drop damaged entries and abandoned writes, then entries (oldest or least recently used first) until under `maxBytes` */
  gc(opts: GcOptions): Promise<GcReport>;
  /** remove every entry */
  clean(opts?: Omit<GcOptions, 'maxBytes'>): Promise<CleanReport>;

  /**
   * Run `fn` holding the lock of one step key, waiting while another live process holds it (`fn` should
   * repeat its lookup first). A lock whose holder is gone is taken over, with a warning.
   */
  withStepLock<T>(key: Digest, fn: () => Promise<T>, opts?: WaitOptions): Promise<T>;
  /**
   * Run `fn` as a registered run. gc leaves the entries of `opts.pins` alone while it lasts (a run that pins
   * nothing is waited for instead); clean waits until it is done.
   */
  withRun<T>(fn: () => Promise<T>, opts?: RunOptions): Promise<T>;
}

/** `get` for every backend: lookup, then verify; a damaged entry is reported, evicted and a miss */
export async function verifiedEntry(
  store: Pick<StepStore, 'lookup' | 'verify' | 'evict'>,
  kind: string,
  key: Digest,
  onCorrupt: StoreOptions['onCorrupt'],
): Promise<CacheEntry | undefined> {
  const entry = await store.lookup(kind, key);
  if (!entry) return undefined;
  const verdict = await store.verify(entry);
  if (verdict.ok) return entry;
  onCorrupt?.(kind, key, verdict.problem);
  await store.evict(kind, key, verdict.problem);
  return undefined;
}

/** the one-shot commit/abort wrapper every backend's pending entry shares */
export function pendingEntry(
  dir: string,
  commit: (fields: CommitFields) => Promise<CacheEntry>,
  cleanup: () => Promise<void>,
): PendingEntry {
  let settled = false;
  const settle = (): void => {
    if (settled) throw new Error(`pending cache entry ${dir} was already committed or aborted`);
    settled = true;
  };
  return {
    dir,
    commit: async (fields) => {
      settle();
      try {
        return await commit(fields);
      } finally {
        await cleanup();
      }
    },
    abort: async () => {
      settle();
      await cleanup();
    },
  };
}

/** whether every machine sharing the store sees the entry: an S3 store asks the bucket, ignoring its local copy */
export async function inspectShared(store: StepStore, kind: string, key: Digest): Promise<boolean> {
  const remote = (store as Partial<{ inspectRemote: StepStore['inspect'] }>).inspectRemote;
  const found = remote ? await remote.call(store, kind, key) : await store.inspect(kind, key);
  return found.status === 'hit';
}
