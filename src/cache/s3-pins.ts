// Pins in an S3 bucket, so that `cache gc` on one machine leaves alone the entries a run on another needs.
// A run registers the step keys it may read or write as one object, runs/<host>-<pid>-<rand>.json
// {owner, pins, heartbeatAt}, rewritten every heartbeat and deleted when the run ends; gc takes the bucket's
// gc lock (locks/gc.lock), lists runs/, leaves the pinned entries alone and deletes registrations whose
// heartbeat stopped. The handshake is the directory store's (lock.ts): a run writes its registration, then
// looks for a live gc lock and waits while there is one; gc takes its lock, then lists the registrations.
// S3 is strongly consistent (read-after-write, list-after-write), so one of the two sees the other. Runs
// that pin nothing do not register here: the bucket's gc never waits for runs.

import { hostname } from 'node:os';
import { uniqueSuffix } from './fs-atomic.js';
import type { Digest } from './key.js';
import { currentOwner, FOREIGN_STALE_MS, HEARTBEAT_MS, type LockOwner } from './lock-file.js';
import { Waiter, type WaitOptions } from './lock.js';
import type { S3Bucket } from './s3-bucket.js';
import type { S3Locks } from './s3-lock.js';

const GC_LOCK = 'gc';

interface Registration extends LockOwner {
  pins: Digest[];
  /** ISO time of the run's last heartbeat */
  heartbeatAt: string;
}

export class S3Pins {
  readonly #bucket: S3Bucket;
  readonly #locks: S3Locks;
  readonly #staleMs: number;

  constructor(bucket: S3Bucket, locks: S3Locks, opts: { staleMs?: number } = {}) {
    this.#bucket = bucket;
    this.#locks = locks;
    this.#staleMs = opts.staleMs ?? FOREIGN_STALE_MS;
  }

  /** run `fn` with `pins` registered in the bucket (waiting first while a gc of the bucket is going on) */
  async withPins<T>(pins: readonly Digest[], fn: () => Promise<T>, opts: WaitOptions = {}): Promise<T> {
    const rel = `runs/${hostname().replace(/[^A-Za-z0-9.-]/g, '_')}-${uniqueSuffix()}.json`;
    const owner = currentOwner();
    const write = (): Promise<unknown> => this.#bucket.putText(rel, JSON.stringify({ ...owner, pins: [...pins], heartbeatAt: new Date().toISOString() } satisfies Registration));
    const waiter = new Waiter('the store (gc in progress)', opts, 2_000);
    for (;;) {
      await write();
      const gc = await this.#locks.holder(GC_LOCK);
      if (gc === undefined) break;
      await this.#bucket.delete([rel]);
      await waiter.wait(gc);
    }
    let beat: Promise<unknown> = Promise.resolve();
    const timer = setInterval(() => (beat = beat.then(write).catch(() => undefined)), HEARTBEAT_MS);
    timer.unref();
    try {
      return await fn();
    } finally {
      clearInterval(timer);
      await beat;
      await this.#bucket.delete([rel]).catch(() => undefined);
    }
  }

  /** run `fn` holding the bucket's gc lock, with the keys pinned by live runs; abandoned registrations are deleted */
  withGc<T>(fn: (pinned: ReadonlySet<Digest>) => Promise<T>, opts: WaitOptions = {}): Promise<T> {
    return this.#locks.withLock(GC_LOCK, 'the gc lock of the store', async () => fn(await this.#pinned()), opts);
  }

  async #pinned(): Promise<Set<Digest>> {
    const pinned = new Set<Digest>();
    for (const o of await this.#bucket.list('runs/')) {
      const got = await this.#bucket.getText(o.rel);
      if (got === undefined) continue;
      const run = parseRegistration(got.text);
      const beatMs = run ? Date.parse(run.heartbeatAt) : got.lastModifiedMs;
      if (!(Date.now() - beatMs <= this.#staleMs)) {
        await this.#bucket.delete([o.rel]);
        continue;
      }
      // a registration being written, or of a newer format: pins nothing we can read, so it is not waited for
      for (const key of run?.pins ?? []) pinned.add(key);
    }
    return pinned;
  }
}

function parseRegistration(text: string): Registration | undefined {
  try {
    const o = JSON.parse(text) as Partial<Registration>;
    return typeof o.heartbeatAt === 'string' && Array.isArray(o.pins) ? (o as Registration) : undefined;
  } catch {
    return undefined;
  }
}

