// Content digests of source files (model shards, tokenizer, datasets) for cache keys. Hashing a multi-GB
// checkpoint takes seconds, so, like make and DVC, a stat cache (<cacheRoot>/digests.json) remembers each
// file's digest together with its size, mtime and inode, and a file whose stat is unchanged is not re-read.

import { createHash } from 'node:crypto';
import { open, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from './fs-atomic.js';
import { isDigest, type Digest } from './key.js';

const HASH_CHUNK = 1 << 20;

/**
 * sha256 of a file's bytes, read in chunks into one buffer (a stream allocates a buffer per chunk: hashing a
 * run's artifacts and model then churned tens of MB of external memory, and the garbage collections it forced)
 */
export async function sha256File(path: string): Promise<Digest> {
  const hash = createHash('sha256');
  const handle = await open(path, 'r');
  try {
    const chunk = Buffer.allocUnsafe(HASH_CHUNK);
    for (;;) {
      const { bytesRead } = await handle.read(chunk, 0, HASH_CHUNK, null);
      if (bytesRead === 0) break;
      hash.update(bytesRead === HASH_CHUNK ? chunk : chunk.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
  return hash.digest('hex') as Digest;
}

interface StatEntry {
  size: number;
  mtimeMs: number;
  ino: number;
  digest: Digest;
  /** wall-clock time of the stat the digest was checked against */
  statAtMs: number;
}

/**
 * A file modified within this long before it was hashed may be modified again without its mtime moving
 * (timestamps are coarse), so such an entry is not trusted until the file is re-hashed later (git calls
 * these entries "racily clean").
 */
const RACY_WINDOW_MS = 2000;

/** the stat cache behind {@link digestFile}; one per cache root and process */
export class DigestStatCache {
  readonly file: string;
  #entries: Map<string, StatEntry> | undefined;
  #dirty = new Map<string, StatEntry>();
  #writing: Promise<void> = Promise.resolve();

  constructor(cacheRoot: string) {
    this.file = join(cacheRoot, 'digests.json');
  }

  /** the digest of `path`, re-hashed only when its size, mtime or inode changed since it was last hashed */
  async digest(path: string): Promise<Digest> {
    const abs = resolve(path);
    const entries = await this.#load();
    const before = await stat(abs);
    const known = entries.get(abs);
    if (known && sameStat(known, before) && before.mtimeMs + RACY_WINDOW_MS <= known.statAtMs) return known.digest;
    const statAtMs = Date.now();
    const digest = await sha256File(abs);
    const after = await stat(abs);
    // a file that changed while it was read gets no entry: its digest may mix old and new bytes
    if (sameStat({ size: before.size, mtimeMs: before.mtimeMs, ino: before.ino }, after)) {
      const entry: StatEntry = { size: after.size, mtimeMs: after.mtimeMs, ino: after.ino, digest, statAtMs };
      entries.set(abs, entry);
      this.#dirty.set(abs, entry);
      // the stat cache only saves time: a cache dir we cannot write must not fail the digest
      await this.flush().catch(() => undefined);
    }
    return digest;
  }

  /** merge this process's new entries into digests.json (temp file + rename); safe against other processes */
  flush(): Promise<void> {
    this.#writing = this.#writing.catch(() => undefined).then(async () => {
      if (this.#dirty.size === 0) return;
      const onDisk = await readEntries(this.file);
      for (const [p, e] of this.#dirty) onDisk.set(p, e);
      this.#dirty.clear();
      await writeFileAtomic(this.file, JSON.stringify(Object.fromEntries(onDisk), null, 1));
    });
    return this.#writing;
  }

  async #load(): Promise<Map<string, StatEntry>> {
    this.#entries ??= await readEntries(this.file);
    return this.#entries;
  }
}

/**
 * sha256 of a file's content. With a stat cache, unchanged files (same size, mtime and inode) are not
 * re-read; without one, every call hashes the whole file.
 */
export function digestFile(path: string, statCache?: DigestStatCache): Promise<Digest> {
  return statCache ? statCache.digest(path) : sha256File(path);
}

function sameStat(a: Pick<StatEntry, 'size' | 'mtimeMs' | 'ino'>, b: { size: number; mtimeMs: number; ino: number }) {
  return a.size === b.size && a.mtimeMs === b.mtimeMs && a.ino === b.ino;
}

/** the entries of a digests.json; a missing or damaged file is an empty cache, never an error */
async function readEntries(file: string): Promise<Map<string, StatEntry>> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch {
    return new Map();
  }
  const out = new Map<string, StatEntry>();
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return out;
  for (const [path, e] of Object.entries(raw as Record<string, unknown>)) {
    if (isStatEntry(e)) out.set(path, e);
  }
  return out;
}

function isStatEntry(e: unknown): e is StatEntry {
  if (typeof e !== 'object' || e === null) return false;
  const r = e as Record<string, unknown>;
  return (
    typeof r.size === 'number' &&
    typeof r.mtimeMs === 'number' &&
    typeof r.ino === 'number' &&
    typeof r.statAtMs === 'number' &&
    isDigest(r.digest)
  );
}
