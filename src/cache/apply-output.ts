// Publishing a cache entry as a user's output directory (./out/model-w4a16): the copy is built beside the
// destination and renamed over it, and the previous directory is deleted only once the new one is in
// place, so an interrupted run never leaves a half-written model where a serving engine would load it.

import { constants } from 'node:fs';
import { copyFile, mkdir, readdir, realpath, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { CacheError } from './cache-error.js';
import { errnoCode, isProcessAlive, ownerPid, uniqueSuffix } from './fs-atomic.js';

/**
 * Replace `destDir` by a copy of `files` (paths relative to `srcDir`). Refuses a destination that is not
 * a directory, or that contains the working directory or one of `protectedDirs` (the cache itself).
 */
export async function replaceDirWithCopy(
  srcDir: string,
  files: readonly string[],
  destDir: string,
  protectedDirs: readonly string[] = [],
): Promise<void> {
  // a symlinked output dir (onto a bigger disk) is replaced where it points, and stays a symlink
  const dest = await realpath(resolve(destDir)).catch(() => resolve(destDir));
  for (const p of [process.cwd(), ...protectedDirs]) {
    if (isInside(resolve(p), dest)) {
      throw new CacheError('cache-output-blocked', `refusing to replace ${dest}: it contains ${resolve(p)}; expected an output directory of its own`);
    }
  }
  const existing = await stat(dest).catch(() => undefined);
  if (existing && !existing.isDirectory()) {
    throw new CacheError('cache-output-blocked', `cannot write output to ${dest}: a file is in the way, expected a directory or nothing`);
  }
  await mkdir(dirname(dest), { recursive: true });
  await removeLeftovers(dest);

  const staging = `${dest}.tmp-${uniqueSuffix()}`;
  try {
    for (const rel of files) {
      const to = join(staging, rel);
      await mkdir(dirname(to), { recursive: true });
      // a reflink where the filesystem supports it, else a plain copy; never a hard link into the cache
      await copyFile(join(srcDir, rel), to, constants.COPYFILE_FICLONE);
    }
    await mkdir(staging, { recursive: true });
    await swapIn(staging, dest);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** rename `staging` to `dest`, moving whatever is at `dest` aside first and deleting it afterwards */
async function swapIn(staging: string, dest: string): Promise<void> {
  const olds: string[] = [];
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await rename(staging, dest);
        return;
      } catch (e) {
        if (!['ENOTEMPTY', 'EEXIST'].includes(errnoCode(e) ?? '') || attempt >= 5) throw e;
      }
      // another writer may swap in between; then move theirs aside too and try again
      const old = `${dest}.old-${uniqueSuffix()}`;
      try {
        await rename(dest, old);
        olds.push(old);
      } catch (e) {
        if (errnoCode(e) !== 'ENOENT') throw e;
      }
    }
  } finally {
    for (const old of olds) await rm(old, { recursive: true, force: true });
  }
}

/** staging and old copies beside `dest` left by runs that crashed */
async function removeLeftovers(dest: string): Promise<void> {
  const prefix = `${basename(dest)}.`;
  let names: string[];
  try {
    names = await readdir(dirname(dest));
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix) || !/^(tmp|old)-\d+-[0-9a-f]{8}$/.test(name.slice(prefix.length))) continue;
    const pid = ownerPid(name);
    if (pid !== undefined && !isProcessAlive(pid)) await rm(join(dirname(dest), name), { recursive: true, force: true });
  }
}

/** true when `inner` is `outer` or lies below it */
function isInside(inner: string, outer: string): boolean {
  const rel = relative(outer, inner);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !rel.startsWith(sep) && !/^[a-zA-Z]:/.test(rel));
}
