// Coordination between processes sharing one cache directory.
//
// - Step locks (<root>/locks/<key>.lock) keep two runs from computing the same step at once: the second
//   waits, then repeats its lookup and finds the first one's entry. They only save work: correctness
//   never depends on them, because commits are atomic renames that keep whichever entry landed first.
// - Runs register themselves (<root>/runs/<pid>-<rand>.json, heartbeat like a lock) for as long as they
//   may read or write entries, naming the step keys they pin: every entry they may read or write. gc and
//   clean take the cache-wide lock (<root>/locks/gc.lock), then read the registrations: gc leaves pinned
//   entries alone and waits only for runs that pin nothing (they might need any entry); clean waits for
//   every run. A run registers first and then checks the gc lock, backing off while it is held; gc takes
//   its lock first and then reads the registrations. Whatever the interleaving, at least one side sees
//   the other, so gc never deletes an entry a live run pins, and a long run never holds up gc.
// - A lock whose holder is gone (lock-file.ts: dead pid on this host, stopped heartbeat from another) is
//   taken over, and `onStale` says so: on a shared filesystem that is worth a warning.

import { mkdir, readdir, unlink, utimes } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { CacheError } from './cache-error.js';
import { errnoCode, uniqueSuffix, writeFileAtomic } from './fs-atomic.js';
import type { Digest } from './key.js';
import {
  breakStaleLock,
  currentOwner,
  describeOwner,
  isStale,
  readLock,
  staleReason,
  tryCreateLock,
  type HeldLock,
  type LockOwner,
  type LockState,
} from './lock-file.js';

export interface WaitOptions {
  /** told once per holder that makes us wait, e.g. to print "waiting for process 4711 (since ...)" */
  onWait?: (message: string, holder: LockOwner | undefined) => void;
  /** give up with a `cache-lock-timeout` CacheError after this long; default: wait as long as it takes */
  timeoutMs?: number;
  /** told when a stale lock is taken over, e.g. "took over the lock of step 3f2a… from process 4711 on host b (since …): its heartbeat stopped 130 s ago" */
  onStale?: (message: string) => void;
}

export interface RunOptions extends WaitOptions {
  /**
   * the step keys whose entries the run may read or write: gc leaves them alone and does not wait for the
   * run. Undefined: the run may need any entry, so gc waits until it is done.
   */
  pins?: readonly Digest[];
}

/** a live run as its registration file describes it */
export interface RunRegistration {
  owner: LockOwner;
  /** undefined for a run that pins nothing (gc waits for it) */
  pins: Digest[] | undefined;
}

/**
 * Run `fn` while holding the lock of one step key. If another live process holds it, wait for it to
 * finish; `fn` should then repeat its cache lookup before computing anything.
 */
export async function withStepLock<T>(root: string, key: Digest, fn: () => Promise<T>, opts: WaitOptions = {}): Promise<T> {
  const lock = await acquireLock(join(root, 'locks', `${key}.lock`), `the lock of step ${key.slice(0, 12)}`, opts);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

/**
 * Run `fn` as a registered run: gc leaves the entries it pins alone (or, when it pins nothing, waits until
 * it is done), clean waits until it is done. Waits first while a gc or clean holds the cache-wide lock.
 */
export async function withRun<T>(root: string, fn: () => Promise<T>, opts: RunOptions = {}): Promise<T> {
  const runsDir = join(root, 'runs');
  const gcLock = gcLockPath(root);
  const waiter = new Waiter('the cache (gc/clean in progress)', opts);
  await mkdir(runsDir, { recursive: true });
  for (;;) {
    const owner = currentOwner();
    const file = join(runsDir, `${uniqueSuffix()}.json`);
    // written whole (temp file + rename): gc never reads a registration without its pins
    await writeFileAtomic(file, JSON.stringify(opts.pins ? { ...owner, pins: opts.pins } : owner));
    const gc = await readLock(gcLock);
    if (gc === undefined) {
      // refreshed so that gc on another host can tell a live run from an abandoned registration
      const heartbeat = setInterval(() => {
        const now = new Date();
        utimes(file, now, now).catch(() => undefined);
      }, 10_000);
      heartbeat.unref();
      try {
        return await fn();
      } finally {
        clearInterval(heartbeat);
        await unlink(file).catch(() => undefined);
      }
    }
    await unlink(file).catch(() => undefined);
    const stale = staleReason(gc);
    if (stale === undefined) await waiter.wait(gc.owner);
    else if (await breakStaleLock(gcLock, gc)) opts.onStale?.(takeoverMessage('the cache-wide lock', gc, stale));
  }
}

/**
 * Run `fn` holding the cache-wide lock (for gc and clean), so that no run starts meanwhile. Waits first
 * for the live runs of other processes that pin nothing, or with `waitForAll` for every one; `fn` gets the
 * runs still live, whose pinned entries it must leave alone. Registrations of this very process are not
 * waited for, so a command may gc after its own run.
 */
export async function withCacheExclusive<T>(
  root: string,
  fn: (live: readonly RunRegistration[]) => Promise<T>,
  opts: WaitOptions & { waitForAll?: boolean } = {},
): Promise<T> {
  const lock = await acquireLock(gcLockPath(root), 'the cache-wide lock', opts);
  try {
    const waiter = new Waiter('runs using the cache', opts);
    for (;;) {
      const live = await liveRuns(root);
      const other = (r: RunRegistration): boolean => r.owner.pid !== process.pid || r.owner.hostname !== hostname();
      const blocking = live.find((r) => other(r) && (opts.waitForAll === true || r.pins === undefined));
      if (blocking === undefined) return await fn(live);
      await waiter.wait(blocking.owner);
    }
  } finally {
    await lock.release();
  }
}

/** the registered runs that are still alive; registrations of dead runs are removed */
export async function liveRuns(root: string): Promise<RunRegistration[]> {
  const dir = join(root, 'runs');
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return [];
    throw e;
  }
  const live: RunRegistration[] = [];
  for (const name of names.filter((n) => n.endsWith('.json'))) {
    const state = await readLock(join(dir, name));
    if (state === undefined) continue;
    if (isStale(state)) await unlink(join(dir, name)).catch(() => undefined);
    else if (state.owner) live.push({ owner: state.owner, pins: pinsOf(state.text) });
  }
  return live;
}

function pinsOf(text: string): Digest[] | undefined {
  try {
    const pins = (JSON.parse(text) as { pins?: unknown }).pins;
    return Array.isArray(pins) ? pins.filter((p): p is Digest => typeof p === 'string') : undefined;
  } catch {
    return undefined;
  }
}

function gcLockPath(root: string): string {
  return join(root, 'locks', 'gc.lock');
}

/** take a lock file, waiting (with backoff) while a live process holds it and breaking it when stale */
export async function acquireLock(path: string, what: string, opts: WaitOptions = {}): Promise<HeldLock> {
  const waiter = new Waiter(what, opts);
  for (;;) {
    const held = await tryCreateLock(path);
    if (held) return held;
    const state = await readLock(path);
    if (state === undefined) continue;
    const stale = staleReason(state);
    if (stale === undefined) await waiter.wait(state.owner);
    else if (await breakStaleLock(path, state)) opts.onStale?.(takeoverMessage(what, state, stale));
  }
}

function takeoverMessage(what: string, state: LockState, why: string): string {
  return `took over ${what} from ${describeOwner(state.owner)}: ${why}`;
}

/** polls with backoff (25 ms growing to `maxDelayMs`), reporting each new holder once, enforcing the timeout */
export class Waiter {
  readonly #what: string;
  readonly #opts: WaitOptions;
  readonly #maxDelayMs: number;
  readonly #since = Date.now();
  #delay = 25;
  #lastHolder: string | undefined;

  constructor(what: string, opts: WaitOptions, maxDelayMs = 500) {
    this.#what = what;
    this.#opts = opts;
    this.#maxDelayMs = maxDelayMs;
  }

  async wait(holder: LockOwner | undefined): Promise<void> {
    const message = `waiting for ${describeOwner(holder)}, which holds ${this.#what}`;
    const id = holder ? `${holder.hostname}:${holder.pid}:${holder.token}` : '?';
    if (id !== this.#lastHolder) {
      this.#lastHolder = id;
      this.#opts.onWait?.(message, holder);
    }
    const { timeoutMs } = this.#opts;
    if (timeoutMs !== undefined && Date.now() - this.#since >= timeoutMs) {
      throw new CacheError('cache-lock-timeout', `gave up after ${timeoutMs} ms ${message}`);
    }
    await new Promise((r) => setTimeout(r, this.#delay));
    this.#delay = Math.min(this.#maxDelayMs, Math.round(this.#delay * 1.5));
  }
}
