// Keeping the cache within a size budget. Everything here runs under the cache-wide lock (lock.ts): no run
// starts meanwhile, and the runs already going either pin the entries they need (gc leaves those alone) or
// are waited for. Leftovers of interrupted writes (temp dirs under <root>/tmp/, temp files beside the
// history, digests and lock files, lock files of dead holders) are deleted when their owner is gone: no
// live process has their pid on this host, and no live run registered by another host has it.

import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LAST_USED_FILE, META_FILE, parseMeta, type EntryMeta } from './entry-meta.js';
import { errnoCode, isProcessAlive, listTree, ownerPid, removeTree } from './fs-atomic.js';
import { isDigest, type Digest } from './key.js';
import { withCacheExclusive, type RunRegistration, type WaitOptions } from './lock.js';
import { breakStaleLock, readLock, isStale } from './lock-file.js';

export interface GcOptions extends WaitOptions {
  /** keep the entries' total size at or below this many bytes (see parseSize) */
  maxBytes: number;
}

export interface RemovedEntry {
  kind: string;
  key: Digest;
  bytes: number;
  /** `damaged: <problem>` or `least recently used` */
  reason: string;
}

export interface GcReport {
  removed: RemovedEntry[];
  freedBytes: number;
  remainingBytes: number;
  /** temp dirs and temp files of crashed runs that were deleted */
  tempDirsRemoved: number;
  /** entries over the budget kept because a live run pins them */
  pinnedBytes: number;
}

export interface CleanReport {
  entriesRemoved: number;
  freedBytes: number;
}

/** one <root>/<kind>/<key> directory as found on disk */
export interface ScannedEntry {
  kind: string;
  key: Digest;
  dir: string;
  /** undefined when meta.json is missing or damaged; `problem` then says why */
  meta?: EntryMeta;
  problem?: string;
  /** bytes of every file in the directory */
  bytes: number;
  /** mtime of the `last-used` marker (falls back to meta.json, then the directory) */
  lastUsedMs: number;
}

/** top-level names under the root that are bookkeeping, not step kinds */
export const RESERVED_ROOT_NAMES: readonly string[] = ['tmp', 'locks', 'runs', 'history', 'digests.json', 'evictions.log'];
const BOOKKEEPING = new Set(RESERVED_ROOT_NAMES);

/** every entry directory under root; cheap checks only (meta.json, not file digests) */
export async function scanEntries(root: string): Promise<ScannedEntry[]> {
  const out: ScannedEntry[] = [];
  for (const kind of await dirNames(root)) {
    if (BOOKKEEPING.has(kind)) continue;
    for (const key of await dirNames(join(root, kind))) {
      if (!isDigest(key)) continue;
      const dir = join(root, kind, key);
      const { files } = await listTree(dir).catch(() => ({ files: [] }));
      const scanned: ScannedEntry = { kind, key, dir, bytes: files.reduce((s, f) => s + f.size, 0), lastUsedMs: await lastUsed(dir) };
      const text = await readText(join(dir, META_FILE));
      const parsed = text === undefined ? { ok: false as const, problem: 'meta.json is missing' } : parseMeta(text, kind, key);
      if (parsed.ok) {
        const sizes = new Map(files.map((f) => [f.rel, f.size]));
        const bad = Object.entries(parsed.meta.files).find(([rel, f]) => sizes.get(rel) !== f.size);
        if (bad) scanned.problem = `file "${bad[0]}" is missing or has the wrong size`;
        else scanned.meta = parsed.meta;
      } else {
        scanned.problem = parsed.problem;
      }
      out.push(scanned);
    }
  }
  return out;
}

export function gcCache(root: string, opts: GcOptions): Promise<GcReport> {
  return withCacheExclusive(
    root,
    async (live) => {
      const tempDirsRemoved = await removeLeftovers(root, live);
      const pinned = new Set(live.flatMap((r) => r.pins ?? []));
      const entries = await scanEntries(root);
      const removed: RemovedEntry[] = [];
      const drop = async (e: ScannedEntry, reason: string) => {
        await removeTree(e.dir, join(root, 'tmp'));
        removed.push({ kind: e.kind, key: e.key, bytes: e.bytes, reason });
      };
      let total = 0;
      let pinnedBytes = 0;
      const sound: ScannedEntry[] = [];
      for (const e of entries) {
        if (pinned.has(e.key)) {
          total += e.bytes;
          pinnedBytes += e.bytes;
        } else if (e.meta) {
          sound.push(e);
          total += e.bytes;
        } else {
          await drop(e, `damaged: ${e.problem ?? 'unknown'}`);
        }
      }
      sound.sort((a, b) => a.lastUsedMs - b.lastUsedMs);
      for (const e of sound) {
        if (total <= opts.maxBytes) break;
        await drop(e, 'least recently used');
        total -= e.bytes;
      }
      const freedBytes = removed.reduce((s, r) => s + r.bytes, 0);
      return { removed, freedBytes, remainingBytes: total, tempDirsRemoved, pinnedBytes };
    },
    opts,
  );
}

export function cleanCache(root: string, opts: WaitOptions): Promise<CleanReport> {
  return withCacheExclusive(
    root,
    async (live) => {
      await removeLeftovers(root, live);
      const entries = await scanEntries(root);
      for (const kind of await dirNames(root)) {
        if (!BOOKKEEPING.has(kind)) await removeTree(join(root, kind), join(root, 'tmp'));
      }
      await rm(join(root, 'digests.json'), { force: true });
      await rm(join(root, 'evictions.log'), { force: true });
      await removeLeftovers(root, live);
      return { entriesRemoved: entries.length, freedBytes: entries.reduce((s, e) => s + e.bytes, 0) };
    },
    { ...opts, waitForAll: true },
  );
}

/** a temp file beside a bookkeeping file (writeFileAtomic, lock files): `<name>.tmp-<pid>-<8 hex>` */
const TEMP_FILE = /\.tmp-\d+-[0-9a-f]{8}$/;

/**
 * Delete what interrupted writes left: everything under <root>/tmp/ and every temp file beside the
 * bookkeeping files whose owner is gone, and step lock files whose holder is gone. Returns how many temp
 * dirs and files went.
 */
async function removeLeftovers(root: string, live: readonly RunRegistration[]): Promise<number> {
  const runPids = new Set(live.map((r) => r.owner.pid));
  const gone = (name: string): boolean => {
    const pid = ownerPid(name);
    return pid === undefined || (pid !== process.pid && !runPids.has(pid) && !isProcessAlive(pid));
  };
  let count = 0;
  for (const name of await dirNames(join(root, 'tmp'), true)) {
    if (!gone(name)) continue;
    await rm(join(root, 'tmp', name), { recursive: true, force: true });
    count++;
  }
  for (const dir of [root, join(root, 'history'), join(root, 'locks'), join(root, 'runs')]) {
    for (const name of await dirNames(dir, true)) {
      if (!TEMP_FILE.test(name) || !gone(name)) continue;
      await rm(join(dir, name), { force: true });
      count++;
    }
  }
  for (const name of await dirNames(join(root, 'locks'), true)) {
    if (!name.endsWith('.lock') || name === 'gc.lock') continue;
    const state = await readLock(join(root, 'locks', name)).catch(() => undefined);
    if (state && isStale(state)) await breakStaleLock(join(root, 'locks', name), state);
  }
  return count;
}

async function dirNames(dir: string, includeFiles = false): Promise<string[]> {
  try {
    const list = await readdir(dir, { withFileTypes: true });
    return list.filter((d) => includeFiles || d.isDirectory()).map((d) => d.name);
  } catch (e) {
    if (errnoCode(e) === 'ENOENT' || errnoCode(e) === 'ENOTDIR') return [];
    throw e;
  }
}

async function lastUsed(dir: string): Promise<number> {
  for (const p of [join(dir, LAST_USED_FILE), join(dir, META_FILE), dir]) {
    try {
      return (await stat(p)).mtimeMs;
    } catch {
      // try the next marker
    }
  }
  return 0;
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}
