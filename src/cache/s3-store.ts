// The S3 step store: entries in an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, Ceph), shared by
// every machine that can reach it, with a dir store in front as the local read-through copy (steps read
// and write local files; an entry is downloaded once per machine).
//
// Layout under s3://bucket/prefix/:
//   <kind>/<key>/meta.json         the entry: key record, file sizes + sha256, step result, `upload`
//   <kind>/<key>/<upload>/<file>   the artifact files of one upload (a fresh folder per commit)
//   locks/<key>.lock               step locks (s3-lock.ts)
// A commit uploads every file first and meta.json last, so an interrupted commit is never an entry (gc
// deletes its files once they are older than `abandonedAfterMs`). Lookups check meta.json against a
// listing of the files (sizes); downloads hash every byte and keep nothing that does not match.

import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { S3Client } from '@aws-sdk/client-s3';
import { CacheError } from './cache-error.js';
import { metaText, type DirStore } from './dir-store.js';
import type { EntryMeta } from './entry-meta.js';
import type { CleanReport, GcOptions, GcReport } from './gc.js';
import { isDigest, type Digest } from './key.js';
import type { RunOptions, WaitOptions } from './lock.js';
import { S3Bucket, type BucketTarget, type BucketTuning } from './s3-bucket.js';
import { S3Locks, type LockMode, type S3LockOptions } from './s3-lock.js';
import { S3Pins } from './s3-pins.js';
import { checkRemote, deleteKey, gcBucket, mapLimit, META, remoteBytes, scanBucket, type RemoteKey } from './s3-scan.js';
import {
  pendingEntry,
  verifiedEntry,
  type CacheEntry,
  type DamagedEntry,
  type Inspection,
  type PendingEntry,
  type StepStore,
  type StoreOptions,
  type Verdict,
  type VerifyReport,
} from './step-store.js';
import { StoreError } from './store-error.js';

export interface S3StoreOptions extends StoreOptions {
  /** the local read-through copy */
  local: DirStore;
  /** `--store-endpoint` */
  endpoint?: string | undefined;
  tuning?: Partial<BucketTuning>;
  locks?: Omit<S3LockOptions, 'onWarn'>;
  /** a client of one's own (tests add middleware to it); default: one from the SDK's default chain */
  client?: S3Client;
  /** files of an upload without meta.json older than this were abandoned by a crash; gc deletes them (default 1 h) */
  abandonedAfterMs?: number;
  /** requests in flight at once for transfers and scans (default 4) */
  concurrency?: number;
}

const DEFAULT_ABANDONED_MS = 3_600_000;

export class S3Store implements StepStore {
  readonly bucket: S3Bucket;
  readonly local: DirStore;
  readonly #opts: S3StoreOptions;
  readonly #locks: S3Locks;
  readonly #pins: S3Pins;

  private constructor(bucket: S3Bucket, opts: S3StoreOptions) {
    this.bucket = bucket;
    this.local = opts.local;
    this.#opts = opts;
    this.#locks = new S3Locks(bucket, { ...opts.locks, onWarn: opts.onWarn });
    this.#pins = new S3Pins(bucket, this.#locks, opts.locks?.staleMs === undefined ? {} : { staleMs: opts.locks.staleMs });
  }

  /** connect and check endpoint, bucket and credentials with one listing request */
  static async open(target: BucketTarget, opts: S3StoreOptions): Promise<S3Store> {
    const bucket = await S3Bucket.connect(target, { endpoint: opts.endpoint, ...(opts.tuning ? { tuning: opts.tuning } : {}), ...(opts.client ? { client: opts.client } : {}) });
    await bucket.probe();
    return new S3Store(bucket, opts);
  }

  get root(): string {
    return this.local.root;
  }

  /** let go of the client's sockets (a CLI process exits anyway; tests and long-lived workers call this) */
  close(): void {
    this.bucket.client.destroy();
  }

  get location(): string {
    return this.bucket.target.url;
  }

  async lookup(kind: string, key: Digest): Promise<CacheEntry | undefined> {
    const found = await this.#inspect(kind, key);
    if (found.status === 'corrupt') this.#opts.onCorrupt?.(kind, key, found.problem);
    if (found.status !== 'hit') return undefined;
    if (found.local) await this.local.markUsed(found.entry);
    return found.entry;
  }

  /** the local copy when there is a sound one, else the bucket's entry (meta.json and a listing) */
  async inspect(kind: string, key: Digest): Promise<Inspection> {
    const found = await this.#inspect(kind, key);
    delete found.local;
    return found;
  }

  async #inspect(kind: string, key: Digest): Promise<Inspection & { local?: boolean }> {
    const local = await this.local.inspect(kind, key);
    if (local.status === 'hit') return { ...local, local: true };
    if (local.status === 'corrupt') await this.local.removeEntry(kind, key);
    return this.inspectRemote(kind, key);
  }

  /** the entry as the bucket has it, ignoring the local copy (a coordinator asks this before handing a step to another machine) */
  async inspectRemote(kind: string, key: Digest): Promise<Inspection> {
    const dir = this.local.entryDir(kind, key);
    const base = `${kind}/${key}/`;
    const [meta, objects] = await Promise.all([this.bucket.getText(base + META), this.bucket.list(base)]);
    if (meta === undefined) return { status: 'miss' };
    const checked = checkRemote(kind, key, meta.text, objects);
    return checked.meta ? { status: 'hit', entry: { kind, key, dir, meta: checked.meta } } : { status: 'corrupt', problem: checked.problem! };
  }

  /** the local copy re-hashed; without one, the files downloaded into it, each hashed as it arrives */
  async verify(entry: CacheEntry): Promise<Verdict> {
    const local = await this.local.inspect(entry.kind, entry.key);
    if (local.status === 'hit' && sameFiles(local.entry.meta, entry.meta)) {
      const verdict = await this.local.verify(entry);
      // a local copy damaged on this disk says nothing about the bucket's: download it again
      if (verdict.ok) return verdict;
    }
    if (local.status !== 'miss') await this.local.removeEntry(entry.kind, entry.key);
    const { upload } = entry.meta;
    if (upload === undefined) return { ok: false, problem: 'meta.json names no upload folder' };
    const tmp = await this.local.tempDir(`download-${entry.kind}`);
    try {
      const base = `${entry.kind}/${entry.key}/${upload}/`;
      const problems = await mapLimit(Object.entries(entry.meta.files), this.#concurrency, async ([rel, f]) => {
        await mkdir(dirname(join(tmp, rel)), { recursive: true });
        return this.bucket.fetchChecked(base + rel, join(tmp, rel), f, rel);
      });
      const problem = problems.find((p) => p !== undefined);
      if (problem !== undefined) return { ok: false, problem: `${problem} (downloaded from ${this.location})` };
      await this.local.install(entry.kind, entry.key, tmp, entry.meta);
      return { ok: true };
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  get(kind: string, key: Digest): Promise<CacheEntry | undefined> {
    return verifiedEntry(this, kind, key, this.#opts.onCorrupt);
  }

  /** artifacts are written locally; commit uploads them, then meta.json, then installs the local copy */
  async begin(kind: string, key: Digest): Promise<PendingEntry> {
    this.local.entryDir(kind, key);
    const dir = await this.local.tempDir(`pending-${kind}`);
    return pendingEntry(
      dir,
      async (fields) => {
        const sealed = await this.local.seal(kind, key, dir, fields);
        return this.local.install(kind, key, dir, await this.#publish(kind, key, dir, sealed));
      },
      () => rm(dir, { recursive: true, force: true }),
    );
  }

  /** upload files, then meta.json; a sound entry already in the bucket is kept (the first commit wins) */
  async #publish(kind: string, key: Digest, dir: string, sealed: EntryMeta): Promise<EntryMeta> {
    const theirs = await this.inspectRemote(kind, key);
    // a commit of a key that exists happens after a race, or to replace a damaged entry: read theirs to tell
    const problem = theirs.status === 'hit' ? await this.#remoteProblem(theirs.entry) : theirs.status === 'corrupt' ? theirs.problem : undefined;
    if (theirs.status === 'hit' && problem === undefined) return sealed;
    if (problem !== undefined) await this.evict(kind, key, `replaced on commit: ${problem}`);
    const upload = `u${Date.now().toString(36)}-${randomBytes(5).toString('hex')}`;
    const base = `${kind}/${key}/`;
    const meta: EntryMeta = { ...sealed, upload };
    const uploaded = Object.keys(meta.files).map((rel) => `${base}${upload}/${rel}`);
    try {
      await mapLimit(Object.entries(meta.files), this.#concurrency, ([rel, f]) => this.bucket.putFile(`${base}${upload}/${rel}`, join(dir, rel), f.size, f.sha256));
      const conditional = (await this.#locks.mode()) === 'conditional';
      const put = await this.bucket.putText(base + META, metaText(meta), conditional ? { ifNoneMatch: '*' } : {});
      if (put !== 'precondition-failed') return meta;
    } catch (e) {
      await this.bucket.delete(uploaded).catch(() => undefined);
      throw new StoreError('store-upload-failed', `${(e as Error).message}; ${kind}/${key.slice(0, 12)} was not published`);
    }
    // another process published this key between our check and our meta.json: theirs stands
    await this.bucket.delete(uploaded).catch(() => undefined);
    return sealed;
  }

  /** remove the entry from the bucket (meta.json first, so it stops being an entry at once) and locally */
  async evict(kind: string, key: Digest, reason: string): Promise<void> {
    const hadLocal = await this.local.removeEntry(kind, key);
    const objects = await this.bucket.list(`${kind}/${key}/`);
    await deleteKey(this.bucket, kind, key, objects);
    if (hadLocal || objects.length > 0) await this.local.logEviction(kind, key, `${reason} (removed from ${this.location})`);
  }

  async applyTo(entry: CacheEntry, destDir: string, written: Readonly<Record<string, string>> = {}): Promise<void> {
    const local = await this.local.inspect(entry.kind, entry.key);
    if (local.status !== 'hit') {
      const verdict = await this.verify(entry);
      if (!verdict.ok) throw new CacheError('cache-entry-corrupt', `entry ${entry.kind}/${entry.key.slice(0, 12)} in ${this.location} is damaged: ${verdict.problem}`);
    }
    await this.local.applyTo(entry, destDir, written);
  }

  async list(): Promise<CacheEntry[]> {
    return (await this.#scan()).flatMap((r) => (r.meta ? [{ kind: r.kind, key: r.key, dir: this.local.entryDir(r.kind, r.key), meta: r.meta }] : []));
  }

  /** bytes of every entry in the bucket (meta.json and published files; damaged entries count whole) */
  async totalSize(): Promise<number> {
    return (await this.#scan()).reduce((sum, r) => sum + remoteBytes(r), 0);
  }

  /** download-hash every file of every entry in the bucket (nothing is stored locally) */
  async verifyAll(opts: { onEntry?: (done: number, total: number) => void } = {}): Promise<VerifyReport> {
    const scanned = await this.#scan();
    const entries = scanned.flatMap((r) => (r.meta ? [{ kind: r.kind, key: r.key, dir: this.local.entryDir(r.kind, r.key), meta: r.meta }] : []));
    // a meta.json that does not parse or lists missing files is damaged too (an upload in progress has none yet)
    const unsound = scanned.flatMap((r) => (r.metaBytes !== undefined && !r.meta ? [{ kind: r.kind, key: r.key, problem: r.problem ?? 'meta.json is damaged' }] : []));
    let done = 0;
    const verdicts = await mapLimit(entries, this.#concurrency, async (e) => {
      const problem = await this.#remoteProblem(e);
      opts.onEntry?.(++done, entries.length);
      return problem;
    });
    const damaged: DamagedEntry[] = [...unsound, ...entries.flatMap((e, i) => (verdicts[i] === undefined ? [] : [{ kind: e.kind, key: e.key, problem: verdicts[i]! }]))];
    return { entries: entries.length, damaged };
  }

  /**
   * In the bucket: delete damaged entries and abandoned uploads, then the oldest entries (by creation:
   * S3 keeps no access times) until the rest fits `maxBytes`; then gc the local copy with the same budget.
   * Entries pinned by live runs on any machine (s3-pins.ts) are left alone; runs are never waited for.
   */
  async gc(opts: GcOptions): Promise<GcReport & { local: GcReport }> {
    const bucket = await this.#pins.withGc(async (pinned) => {
      const all = await this.#scan();
      return gcBucket(this.bucket, all, pinned, opts, Date.now() - (this.#opts.abandonedAfterMs ?? DEFAULT_ABANDONED_MS));
    }, opts);
    return { ...bucket, local: await this.local.gc(opts) };
  }

  /** delete every entry in the bucket (and every upload), and the local copy */
  async clean(opts: Omit<GcOptions, 'maxBytes'> = {}): Promise<CleanReport> {
    const scanned = await this.#scan();
    for (const r of scanned) await deleteKey(this.bucket, r.kind, r.key, [...r.uploads.values()].flat());
    await this.local.clean(opts);
    return { entriesRemoved: scanned.filter((r) => r.metaBytes !== undefined).length, freedBytes: scanned.reduce((s, r) => s + remoteBytes(r), 0) };
  }

  /** a lock object in the bucket, so that machines sharing the store do not compute one step together */
  withStepLock<T>(key: Digest, fn: () => Promise<T>, opts: WaitOptions = {}): Promise<T> {
    if (!isDigest(key)) throw new CacheError('cache-invalid-name', `invalid cache key "${key}": expected 64 lowercase hex digits`);
    return this.#locks.withLock(key, `the lock of step ${key.slice(0, 12)} in ${this.location}`, fn, { ...opts, onStale: opts.onStale ?? this.#opts.onWarn });
  }

  /** whether this server enforces conditional writes, so that locks exclude (probed once) */
  lockMode(): Promise<LockMode> {
    return this.#locks.mode();
  }

  /** registers with the local copy, and its pins in the bucket too (gc on any machine leaves them alone) */
  withRun<T>(fn: () => Promise<T>, opts: RunOptions = {}): Promise<T> {
    const { pins } = opts;
    return this.local.withRun(pins ? () => this.#pins.withPins(pins, fn, opts) : fn, opts);
  }

  /** every file of the entry in the bucket streamed through sha256 (nothing stored): the first problem */
  async #remoteProblem(e: CacheEntry): Promise<string | undefined> {
    for (const [rel, f] of Object.entries(e.meta.files)) {
      const problem = await this.bucket.fetchChecked(`${e.kind}/${e.key}/${e.meta.upload}/${rel}`, undefined, f, rel);
      if (problem !== undefined) return problem;
    }
    return undefined;
  }

  #scan(): Promise<RemoteKey[]> {
    return scanBucket(this.bucket, this.#concurrency * 2);
  }

  get #concurrency(): number {
    return this.#opts.concurrency ?? 4;
  }


}

function sameFiles(a: EntryMeta, b: EntryMeta): boolean {
  const fa = Object.entries(a.files);
  return fa.length === Object.keys(b.files).length && fa.every(([rel, f]) => b.files[rel]?.sha256 === f.sha256 && b.files[rel]?.size === f.size);
}
