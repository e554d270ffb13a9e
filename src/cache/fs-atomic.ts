// Small filesystem helpers the cache builds on: names that never collide between processes, files that
// appear complete or not at all, and directory trees removed by first renaming them out of sight.

import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { onFullDisk } from '../diag/file-errors.js';

/** `<pid>-<8 hex>`: unique across the processes sharing a cache, and names its owner for cleanup */
export function uniqueSuffix(): string {
  return `${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** the pid a {@link uniqueSuffix}-named file belongs to, or undefined for any other name */
export function ownerPid(name: string): number | undefined {
  const m = /(?:^|[.-])(\d+)-[0-9a-f]{8}$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** false only when no process with this pid exists on this host (EPERM means it exists) */
export function isProcessAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * write a sibling temp file, then rename it over `path`: readers see the old or the new file, never half.
 * A full disk is a DiskFullError naming `path` (a write through a file handle names no path of its own).
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${uniqueSuffix()}`;
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw onFullDisk(e, path);
  }
}

/**
 * Remove a directory tree so that nobody ever sees it half-deleted: rename it to a unique name inside
 * `trashDir` (same filesystem), then delete. Returns false when `path` did not exist.
 */
export async function removeTree(path: string, trashDir: string): Promise<boolean> {
  await mkdir(trashDir, { recursive: true });
  const doomed = join(trashDir, `removed-${uniqueSuffix()}`);
  try {
    await rename(path, doomed);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
  await rm(doomed, { recursive: true, force: true });
  return true;
}

export interface TreeFile {
  /** path relative to the tree root, always with `/` separators */
  rel: string;
  size: number;
}

/** every regular file under `root`, sorted by relative path; symlinks and other specials are returned in `odd` */
export async function listTree(root: string): Promise<{ files: TreeFile[]; odd: string[] }> {
  const files: TreeFile[] = [];
  const odd: string[] = [];
  const walk = async (dir: string, prefix: string): Promise<void> => {
    for (const d of await readdir(dir, { withFileTypes: true })) {
      const rel = prefix ? `${prefix}/${d.name}` : d.name;
      if (d.isDirectory()) await walk(join(dir, d.name), rel);
      else if (d.isFile()) files.push({ rel, size: (await stat(join(dir, d.name))).size });
      else odd.push(rel);
    }
  };
  await walk(root, '');
  files.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  return { files, odd };
}

export function errnoCode(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}
