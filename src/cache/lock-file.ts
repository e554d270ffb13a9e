// One lock file: created atomically (a hard link of a complete temp file, so nobody reads a half-written
// owner; O_CREAT|O_EXCL where the filesystem has no hard links), naming its owner {pid, hostname,
// startedAt}. Its heartbeat is its mtime, refreshed every few seconds while it is held (utimes: on NFS a
// SETATTR that goes straight to the server). A lock whose owner is gone is stale: a dead pid on this
// host, a pid now used by another process, or (for another host, where pids mean nothing) a lock whose
// heartbeat stopped.
//
// Network filesystems: link(2) is the lock primitive open(2) recommends for NFS; a reply lost after the
// server made the link reports EEXIST, so the temp file's link count decides. Lock files are read through
// one open handle (close-to-open consistency revalidates the attributes), and a stale lock is removed only
// if neither its content nor its heartbeat changed since it was judged stale.

import { link, mkdir, open, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { errnoCode, isProcessAlive, uniqueSuffix } from './fs-atomic.js';

export interface LockOwner {
  pid: number;
  hostname: string;
  /** ISO 8601 time the lock was taken */
  startedAt: string;
  /**
   * the owner process's start time in clock ticks since boot (Linux /proc/<pid>/stat field 22): tells
   * a live owner from an unrelated process that got the same pid later (common in containers, where
   * every run is pid 1 or close to it). Absent where /proc is unavailable.
   */
  procStart?: string;
  /** unique per acquisition, so a process never mistakes another of its own locks for this one */
  token: string;
}

export interface HeldLock {
  path: string;
  owner: LockOwner;
  release(): Promise<void>;
}

/** a lock of another host counts as abandoned when its holder has not refreshed it for this long */
export const FOREIGN_STALE_MS = 120_000;
/** how often a held lock's heartbeat (its mtime) is refreshed */
export const HEARTBEAT_MS = 10_000;
/** an unparseable lock file (a crash between create and write on filesystems without hard links) */
const GARBAGE_STALE_MS = 10_000;

export function procStartOf(pid: number): string | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

export function currentOwner(): LockOwner {
  const procStart = procStartOf(process.pid);
  const owner: LockOwner = {
    pid: process.pid,
    hostname: hostname(),
    startedAt: new Date().toISOString(),
    token: uniqueSuffix(),
  };
  return procStart === undefined ? owner : { ...owner, procStart };
}

/** try once to create the lock file; undefined when it already exists */
export async function tryCreateLock(path: string, owner: LockOwner = currentOwner()): Promise<HeldLock | undefined> {
  await mkdir(dirname(path), { recursive: true });
  const text = JSON.stringify(owner);
  const tmp = `${path}.tmp-${uniqueSuffix()}`;
  try {
    // inside the try: a write that fails (a full disk) leaves no temp file
    await writeFile(tmp, text);
    if (!(await linkExclusive(tmp, path))) return undefined;
  } catch (e) {
    const code = errnoCode(e);
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw e;
    // no hard links on this filesystem: fall back to O_CREAT|O_EXCL plus a write
    try {
      await writeFile(path, text, { flag: 'wx' });
    } catch (e2) {
      if (errnoCode(e2) === 'EEXIST') return undefined;
      throw e2;
    }
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
  const heartbeat = setInterval(() => {
    const now = new Date();
    utimes(path, now, now).catch(() => undefined);
  }, HEARTBEAT_MS);
  heartbeat.unref();
  return {
    path,
    owner,
    release: async () => {
      clearInterval(heartbeat);
      // only our own lock: if it was broken as stale, someone else's lock may be there now
      const now = await readLock(path);
      if (now?.owner && sameOwner(now.owner, owner)) await unlink(path).catch(() => undefined);
    },
  };
}

/**
 * link(2) `tmp` to `path`; false when `path` exists already. A retransmitted LINK whose first reply was
 * lost fails with EEXIST although the link was made, so then the temp file's link count decides.
 */
async function linkExclusive(tmp: string, path: string): Promise<boolean> {
  try {
    await link(tmp, path);
    return true;
  } catch (e) {
    if (errnoCode(e) !== 'EEXIST') throw e;
    return (await stat(tmp)).nlink === 2;
  }
}

export interface LockState {
  /** undefined when the file could not be parsed */
  owner: LockOwner | undefined;
  text: string;
  mtimeMs: number;
}

/** the current lock file, or undefined when there is none */
export async function readLock(path: string): Promise<LockState | undefined> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return undefined;
    throw e;
  }
  try {
    const st = await handle.stat();
    const text = await handle.readFile('utf8');
    return { owner: parseOwner(text), text, mtimeMs: st.mtimeMs };
  } finally {
    await handle.close();
  }
}

/** why nobody can still be holding this lock, or undefined while its holder may be alive */
export function staleReason(state: LockState, opts: { foreignStaleMs?: number } = {}): string | undefined {
  const { owner } = state;
  const age = Date.now() - state.mtimeMs;
  if (owner === undefined) return age > GARBAGE_STALE_MS ? 'its content is unreadable' : undefined;
  if (owner.hostname !== hostname()) {
    const limit = opts.foreignStaleMs ?? FOREIGN_STALE_MS;
    return age > limit ? `its heartbeat stopped ${Math.round(age / 1000)} s ago (limit ${Math.round(limit / 1000)} s)` : undefined;
  }
  if (!isProcessAlive(owner.pid)) return 'the process is gone';
  if (owner.procStart === undefined) return undefined;
  const now = procStartOf(owner.pid);
  return now !== undefined && now !== owner.procStart ? 'its pid now belongs to another process' : undefined;
}

/** true when nobody can still be holding this lock */
export function isStale(state: LockState, opts: { foreignStaleMs?: number } = {}): boolean {
  return staleReason(state, opts) !== undefined;
}

/**
 * Remove a lock judged stale from `seen`, unless it changed since (another owner, or a heartbeat from a
 * holder that was only slow): a second lock file (`.break`) makes the re-check and the unlink one step,
 * so two processes breaking the same stale lock cannot delete a fresh lock that a third process took in
 * between. True when this call removed it.
 */
export async function breakStaleLock(path: string, seen: LockState): Promise<boolean> {
  const breakerPath = `${path}.break`;
  const breaker = await tryCreateLock(breakerPath);
  if (!breaker) {
    const other = await readLock(breakerPath);
    if (other && isStale(other, { foreignStaleMs: GARBAGE_STALE_MS })) await unlink(breakerPath).catch(() => undefined);
    return false;
  }
  try {
    const now = await readLock(path);
    if (!now || now.text !== seen.text || now.mtimeMs !== seen.mtimeMs) return false;
    await unlink(path);
    return true;
  } catch {
    return false;
  } finally {
    await breaker.release();
  }
}

export function describeOwner(owner: LockOwner | undefined): string {
  if (!owner) return 'an unknown process';
  const where = owner.hostname === hostname() ? '' : ` on host ${owner.hostname}`;
  return `process ${owner.pid}${where} (since ${owner.startedAt})`;
}

function parseOwner(text: string): LockOwner | undefined {
  try {
    const o = JSON.parse(text) as Partial<LockOwner>;
    if (typeof o.pid === 'number' && typeof o.hostname === 'string' && typeof o.startedAt === 'string' && typeof o.token === 'string') {
      return o as LockOwner;
    }
  } catch {
    // fall through
  }
  return undefined;
}

function sameOwner(a: LockOwner, b: LockOwner): boolean {
  return a.token === b.token && a.pid === b.pid && a.hostname === b.hostname;
}
