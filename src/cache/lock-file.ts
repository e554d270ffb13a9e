// One lock file: created with O_EXCL semantics (a hard link of a complete temp file, so nobody reads a
// half-written owner), naming its owner {pid, hostname, startedAt}. A lock whose owner is gone is stale:
// a dead pid on this host, a pid now used by another process, or (for another host, where pids mean
// nothing) a lock whose holder stopped refreshing it.

import { link, mkdir, readFile, stat, unlink, utimes, writeFile } from 'node:fs/promises';
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
const HEARTBEAT_MS = 10_000;
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
  await writeFile(tmp, text);
  try {
    await link(tmp, path);
  } catch (e) {
    const code = errnoCode(e);
    if (code === 'EEXIST') return undefined;
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

export interface LockState {
  /** undefined when the file could not be parsed */
  owner: LockOwner | undefined;
  text: string;
  mtimeMs: number;
}

/** the current lock file, or undefined when there is none */
export async function readLock(path: string): Promise<LockState | undefined> {
  try {
    const [text, st] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
    return { owner: parseOwner(text), text, mtimeMs: st.mtimeMs };
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return undefined;
    throw e;
  }
}

/** true when nobody can still be holding this lock */
export function isStale(state: LockState, opts: { foreignStaleMs?: number } = {}): boolean {
  const { owner } = state;
  if (owner === undefined) return Date.now() - state.mtimeMs > GARBAGE_STALE_MS;
  if (owner.hostname !== hostname()) return Date.now() - state.mtimeMs > (opts.foreignStaleMs ?? FOREIGN_STALE_MS);
  if (!isProcessAlive(owner.pid)) return true;
  if (owner.procStart === undefined) return false;
  const now = procStartOf(owner.pid);
  return now !== undefined && now !== owner.procStart;
}

/**
 * Remove a lock judged stale from `seen`, unless it changed since: a second lock file (`.break`) makes
 * the re-check and the unlink one step, so two processes breaking the same stale lock cannot delete a
 * fresh lock that a third process took in between.
 */
export async function breakStaleLock(path: string, seen: LockState): Promise<void> {
  const breakerPath = `${path}.break`;
  const breaker = await tryCreateLock(breakerPath);
  if (!breaker) {
    const other = await readLock(breakerPath);
    if (other && isStale(other, { foreignStaleMs: GARBAGE_STALE_MS })) await unlink(breakerPath).catch(() => undefined);
    return;
  }
  try {
    const now = await readLock(path);
    if (now && now.text === seen.text) await unlink(path).catch(() => undefined);
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
