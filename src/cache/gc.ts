// Keeping the cache within a size budget. Everything here runs under the cache-wide lock (lock.ts), so no
// other run is reading or writing entries meanwhile; that is also what makes every temp dir left under
// <root>/tmp/ by another process safe to delete: its owner crashed.

import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LAST_USED_FILE, META_FILE, parseMeta, type EntryMeta } from './entry-meta.js';
import { errnoCode, listTree, ownerPid, removeTree } from './fs-atomic.js';
import { isDigest, type Digest } from './key.js';
import { withCacheExclusive, type WaitOptions } from './lock.js';

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
  /** temp dirs of crashed runs that were deleted */
  tempDirsRemoved: number;
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
    async () => {
      const tempDirsRemoved = await removeStaleTemp(root);
      const entries = await scanEntries(root);
      const removed: RemovedEntry[] = [];
      const drop = async (e: ScannedEntry, reason: string) => {
        await removeTree(e.dir, join(root, 'tmp'));
        removed.push({ kind: e.kind, key: e.key, bytes: e.bytes, reason });
      };
      let total = 0;
      const sound: ScannedEntry[] = [];
      for (const e of entries) {
        if (e.meta) {
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
      return { removed, freedBytes, remainingBytes: total, tempDirsRemoved };
    },
    opts,
  );
}

export function cleanCache(root: string, opts: WaitOptions): Promise<CleanReport> {
  return withCacheExclusive(
    root,
    async () => {
      await removeStaleTemp(root);
      const entries = await scanEntries(root);
      for (const kind of await dirNames(root)) {
        if (!BOOKKEEPING.has(kind)) await removeTree(join(root, kind), join(root, 'tmp'));
      }
      await rm(join(root, 'digests.json'), { force: true });
      await rm(join(root, 'evictions.log'), { force: true });
      await removeStaleTemp(root);
      return { entriesRemoved: entries.length, freedBytes: entries.reduce((s, e) => s + e.bytes, 0) };
    },
    opts,
  );
}

/** delete what <root>/tmp holds, except this process's own pending entries; returns how many */
async function removeStaleTemp(root: string): Promise<number> {
  let count = 0;
  for (const name of await dirNames(join(root, 'tmp'), true)) {
    if (ownerPid(name) === process.pid) continue;
    await rm(join(root, 'tmp', name), { recursive: true, force: true });
    count++;
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
