// Publishing a cache entry as a user's output directory (./out/model-w4a16). The new copy is built whole
// beside the destination (`<dest>.tmp-<pid>-<rand>`: the entry's files and the files written with it, such
// as the lock file), then the old directory is renamed away (`<dest>.old-<pid>-<rand>`), the new one renamed
// in, and the old one deleted. A reader of <dest> sees the old directory or the new one, each complete (for
// the instant between the two renames, none); a failure restores the old one, and a process killed between
// the two renames leaves the old one beside <dest>, which the next publication to <dest> puts back first.

import { constants } from 'node:fs';
import { copyFile, mkdir, readdir, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { CacheError } from './cache-error.js';
import { errnoCode, isProcessAlive, ownerPid, uniqueSuffix } from './fs-atomic.js';

export interface DirCopy {
  /** paths relative to the source directory, copied as they are */
  files: readonly string[];
  /** files written into the new directory beside the copies (relative path → content) */
  written?: Readonly<Record<string, string>>;
  /** directories the destination must not contain (the cache itself); the working directory always counts */
  protectedDirs?: readonly string[];
}

/**
 * Replace `destDir` by a copy of `copy.files` (relative to `srcDir`) plus `copy.written`. Refuses a
 * destination that is not a directory, or that contains the working directory or a protected one.
 */
export async function replaceDirWithCopy(srcDir: string, destDir: string, copy: DirCopy): Promise<void> {
  const dest = await outputTarget(destDir, copy.protectedDirs ?? []);
  await mkdir(dirname(dest), { recursive: true });
  await recoverOutputDir(dest);

  const staging = `${dest}.tmp-${uniqueSuffix()}`;
  try {
    await mkdir(staging, { recursive: true });
    for (const rel of copy.files) {
      const to = join(staging, rel);
      await mkdir(dirname(to), { recursive: true });
      // a reflink where the filesystem supports it, else a plain copy; never a hard link into the cache
      await copyFile(join(srcDir, rel), to, constants.COPYFILE_FICLONE);
    }
    for (const [rel, text] of Object.entries(copy.written ?? {})) {
      await mkdir(dirname(join(staging, rel)), { recursive: true });
      await writeFile(join(staging, rel), text);
    }
    await swapIn(staging, dest);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** the real destination (a symlinked output dir is replaced where it points, and stays a symlink), checked */
async function outputTarget(destDir: string, protectedDirs: readonly string[]): Promise<string> {
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
  return dest;
}

/** rename `staging` to `dest`, moving whatever is at `dest` aside first; the old one is deleted once the new one is in, or put back */
async function swapIn(staging: string, dest: string): Promise<void> {
  const olds: string[] = [];
  let swapped = false;
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await rename(staging, dest);
        swapped = true;
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
    // on failure the newest old copy goes back, unless another writer has put a complete one in place
    const restore = swapped ? undefined : olds.pop();
    if (restore !== undefined) await rename(restore, dest).catch(async () => (await exists(dest)) && olds.push(restore));
    for (const old of olds) await rm(old, { recursive: true, force: true });
  }
}

/**
 * Tidy the siblings of an output directory left by writers that were killed: an old copy moved aside is
 * put back when nothing is at `dest` (it was killed between its two renames), and every other staging or
 * old copy of a dead process is deleted. Copies of live processes are left to them.
 */
export async function recoverOutputDir(destDir: string): Promise<void> {
  const dest = await realpath(resolve(destDir)).catch(() => resolve(destDir));
  const prefix = `${basename(dest)}.`;
  let names: string[];
  try {
    names = await readdir(dirname(dest));
  } catch {
    return;
  }
  const dead = names.filter((name) => {
    if (!name.startsWith(prefix) || !/^(tmp|old)-\d+-[0-9a-f]{8}$/.test(name.slice(prefix.length))) return false;
    const pid = ownerPid(name);
    return pid !== undefined && !isProcessAlive(pid);
  });
  const old = dead.find((name) => name.slice(prefix.length).startsWith('old-'));
  if (old !== undefined && !(await exists(dest))) {
    await rename(join(dirname(dest), old), dest).catch(() => undefined);
  }
  for (const name of dead) await rm(join(dirname(dest), name), { recursive: true, force: true });
}

function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

/** true when `inner` is `outer` or lies below it */
function isInside(inner: string, outer: string): boolean {
  const rel = relative(outer, inner);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !rel.startsWith(sep) && !/^[a-zA-Z]:/.test(rel));
}
