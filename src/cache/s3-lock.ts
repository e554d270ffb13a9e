// Step locks in an S3 bucket: one object per lock, <prefix>/locks/<name>.lock, holding its owner (pid,
// host, start time) and a heartbeat time rewritten every few seconds while held.
//
// Where the server honours preconditions (AWS S3 since 2024, MinIO, R2; probed once per process), taking a
// lock is a PutObject with If-None-Match: * (exactly one writer creates it), a heartbeat or a takeover is a
// PutObject with If-Match: <ETag seen>, and a release deletes only the version we wrote: mutual exclusion.
// Where it does not (s3rver, older Ceph), a lock is written, then read back after a pause, and kept if it
// still names us: two processes can both believe they hold it in a window of about one round trip.
// Either way the lock only saves work: entries are immutable, published by their meta.json after every
// file, and digest-checked on download, so even two concurrent computations of one step cannot produce
// a corrupt entry (BullMQ, in the queue, is what makes a step run once).

import { hostname } from 'node:os';
import { uniqueSuffix } from './fs-atomic.js';
import { currentOwner, HEARTBEAT_MS, staleReason, describeOwner, FOREIGN_STALE_MS, type LockOwner } from './lock-file.js';
import { Waiter, type WaitOptions } from './lock.js';
import type { S3Bucket } from './s3-bucket.js';

export type LockMode = 'conditional' | 'best-effort';

interface S3LockRecord extends LockOwner {
  /** ISO time of the holder's last heartbeat (the holder's clock: hosts must agree within the stale limit) */
  heartbeatAt: string;
}

export interface S3LockOptions {
  onWarn?: ((message: string) => void) | undefined;
  /** a lock of another host whose heartbeat is older than this is abandoned (default 2 min) */
  staleMs?: number;
  heartbeatMs?: number;
  /** 'auto' (default) probes the server once */
  mode?: LockMode | 'auto';
  /** pause between writing and reading back a best-effort lock */
  settleMs?: number;
}

export class S3Locks {
  readonly #bucket: S3Bucket;
  readonly #opts: S3LockOptions;
  #mode: Promise<LockMode> | undefined;

  constructor(bucket: S3Bucket, opts: S3LockOptions = {}) {
    this.#bucket = bucket;
    this.#opts = opts;
    if (opts.mode && opts.mode !== 'auto') this.#mode = Promise.resolve(opts.mode);
  }

  /** whether the server enforces If-None-Match / If-Match on PutObject (probed once, with a scratch object) */
  mode(): Promise<LockMode> {
    this.#mode ??= (async () => {
      const rel = `locks/probe-${hostname()}-${uniqueSuffix()}`;
      try {
        await this.#bucket.putText(rel, '{}', { ifNoneMatch: '*' });
        return (await this.#bucket.putText(rel, '{}', { ifNoneMatch: '*' })) === 'precondition-failed' ? 'conditional' : 'best-effort';
      } catch {
        // e.g. 501 NotImplemented for the header: plain writes still work
        return 'best-effort';
      } finally {
        await this.#bucket.delete([rel]).catch(() => undefined);
      }
    })();
    return this.#mode;
  }

  /** run `fn` holding the lock object `locks/<name>.lock`, waiting while a live holder has it */
  async withLock<T>(name: string, what: string, fn: () => Promise<T>, opts: WaitOptions = {}): Promise<T> {
    const held = await this.#acquire(`locks/${name}.lock`, what, opts);
    try {
      return await fn();
    } finally {
      await held.release();
    }
  }

  /** the live holder of `locks/<name>.lock`, or undefined when it is free or abandoned */
  async holder(name: string): Promise<LockOwner | undefined> {
    const current = await this.#bucket.getText(`locks/${name}.lock`);
    if (current === undefined) return undefined;
    const theirs = parseRecord(current.text);
    return this.#staleReason(theirs, current.lastModifiedMs) === undefined ? (theirs ?? { pid: -1, hostname: '?', startedAt: '?', token: '?' }) : undefined;
  }

  async #acquire(rel: string, what: string, opts: WaitOptions): Promise<{ release(): Promise<void> }> {
    const mode = await this.mode();
    const waiter = new Waiter(what, opts, 2_000);
    const onStale = opts.onStale ?? this.#opts.onWarn;
    for (;;) {
      const mine = this.#record();
      if (mode === 'conditional') {
        const put = await this.#bucket.putText(rel, JSON.stringify(mine), { ifNoneMatch: '*' });
        if (put !== 'precondition-failed') return this.#held(rel, what, mine, put.etag, mode);
      }
      const current = await this.#bucket.getText(rel);
      if (current === undefined && mode === 'conditional') continue;
      const theirs = current ? parseRecord(current.text) : undefined;
      const stale = current === undefined ? undefined : this.#staleReason(theirs, current.lastModifiedMs);
      if (current !== undefined && stale === undefined) {
        await waiter.wait(theirs);
        continue;
      }
      // free (best-effort mode) or abandoned: write ours, over exactly the version judged stale if we can
      const put = await this.#bucket.putText(rel, JSON.stringify(mine), current && mode === 'conditional' ? { ifMatch: current.etag } : {});
      if (put === 'precondition-failed') continue;
      if (mode === 'best-effort' && !(await this.#stillOurs(rel, mine))) continue;
      if (current !== undefined) onStale?.(`took over ${what} from ${describeOwner(theirs)}: ${stale}`);
      return this.#held(rel, what, mine, put.etag, mode);
    }
  }

  #held(rel: string, what: string, mine: S3LockRecord, etag: string, mode: LockMode): { release(): Promise<void> } {
    let current = etag;
    let lost = false;
    let beat: Promise<void> = Promise.resolve();
    const timer = setInterval(() => {
      beat = beat.then(async () => {
        if (lost) return;
        const next = { ...mine, heartbeatAt: new Date().toISOString() };
        const put =
          mode === 'conditional'
            ? await this.#bucket.putText(rel, JSON.stringify(next), { ifMatch: current })
            : (await this.#stillOurs(rel, mine, 0))
              ? await this.#bucket.putText(rel, JSON.stringify(next))
              : 'precondition-failed';
        if (put === 'precondition-failed') {
          lost = true;
          this.#opts.onWarn?.(`lost ${what}: another process took it over as stale (this process's heartbeats were late); the store stays consistent, but the step may be computed twice`);
        } else current = put.etag;
      }).catch(() => undefined);
    }, this.#opts.heartbeatMs ?? HEARTBEAT_MS);
    timer.unref();
    return {
      release: async () => {
        clearInterval(timer);
        await beat;
        if (lost) return;
        if (mode === 'conditional') await this.#bucket.deleteIfMatch(rel, current).catch(() => undefined);
        else if (await this.#stillOurs(rel, mine, 0)) await this.#bucket.delete([rel]).catch(() => undefined);
      },
    };
  }

  /** best-effort mode: after a pause, does the lock object still name us? */
  async #stillOurs(rel: string, mine: S3LockRecord, settleMs = this.#opts.settleMs ?? 150): Promise<boolean> {
    if (settleMs > 0) await new Promise((r) => setTimeout(r, settleMs));
    const now = await this.#bucket.getText(rel);
    return now !== undefined && parseRecord(now.text)?.token === mine.token;
  }

  #staleReason(record: S3LockRecord | undefined, lastModifiedMs: number): string | undefined {
    const beatMs = record ? Date.parse(record.heartbeatAt) : lastModifiedMs;
    // an unreadable lock object is judged by its age, like any other host's lock
    const owner = record ?? { pid: -1, hostname: '', startedAt: '', token: '' };
    return staleReason({ owner, text: '', mtimeMs: Number.isFinite(beatMs) ? beatMs : 0 }, { foreignStaleMs: this.#opts.staleMs ?? FOREIGN_STALE_MS });
  }

  #record(): S3LockRecord {
    return { ...currentOwner(), heartbeatAt: new Date().toISOString() };
  }
}

function parseRecord(text: string): S3LockRecord | undefined {
  try {
    const o = JSON.parse(text) as Partial<S3LockRecord>;
    if (typeof o.pid === 'number' && typeof o.hostname === 'string' && typeof o.token === 'string' && typeof o.heartbeatAt === 'string') {
      return o as S3LockRecord;
    }
  } catch {
    // unreadable: judged by its age
  }
  return undefined;
}
