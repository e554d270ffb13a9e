import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { DigestStatCache, digestFile, sha256File } from '../../src/cache/file-digest.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qf-digest-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const sha = (text: string) => createHash('sha256').update(text).digest('hex');
const anHourAgo = () => new Date(Date.now() - 3_600_000);

/** write `text` to `path` with an old mtime, as a checkpoint downloaded a while ago */
async function oldFile(path: string, text: string, mtime = anHourAgo()): Promise<Date> {
  await writeFile(path, text);
  await utimes(path, mtime, mtime);
  return mtime;
}

/** overwrite a file in place with same-size content and put its old mtime back: only a re-read can notice */
async function sneakyRewrite(path: string, text: string, mtime: Date): Promise<void> {
  await writeFile(path, text);
  await utimes(path, mtime, mtime);
}

describe('sha256File', () => {
  test('is the sha256 of the file bytes, also across read chunks and a partial last one', async () => {
    const big = 'x'.repeat(3 << 20) + 'tail';
    await writeFile(join(dir, 'big.bin'), big);
    expect(await sha256File(join(dir, 'big.bin'))).toBe(sha(big));
  });

  test('fails for a missing file', async () => {
    await expect(sha256File(join(dir, 'nope'))).rejects.toThrow(/ENOENT/);
  });
});

describe('digestFile with a stat cache', () => {
  test('does not re-read a file whose size, mtime and inode are unchanged', async () => {
    const file = join(dir, 'model.safetensors');
    const mtime = await oldFile(file, 'weights-v1');
    const cache = new DigestStatCache(dir);
    expect(await digestFile(file, cache)).toBe(sha('weights-v1'));
    await sneakyRewrite(file, 'weights-v2', mtime);
    expect(await digestFile(file, cache)).toBe(sha('weights-v1'));
  });

  test('without a stat cache always reads the file', async () => {
    const file = join(dir, 'model.safetensors');
    const mtime = await oldFile(file, 'weights-v1');
    await digestFile(file);
    await sneakyRewrite(file, 'weights-v2', mtime);
    expect(await digestFile(file)).toBe(sha('weights-v2'));
  });

  test.each([
    ['size', (f: string, m: Date) => oldFile(f, 'weights-v1-longer', m)],
    ['mtime', (f: string) => oldFile(f, 'weights-v2', new Date(Date.now() - 1_800_000))],
    ['inode', async (f: string, m: Date) => {
      await rm(f);
      await writeFile(join(dir, 'spacer'), 'keeps the old inode number in use');
      await oldFile(f, 'weights-v2', m);
    }],
  ])('re-hashes when the %s changes', async (_what, change) => {
    const file = join(dir, 'model.safetensors');
    const mtime = await oldFile(file, 'weights-v1');
    const cache = new DigestStatCache(dir);
    await digestFile(file, cache);
    await change(file, mtime);
    expect(await digestFile(file, cache)).toBe(sha(await readFile(file, 'utf8')));
  });

  test('does not trust a digest taken right after the file was modified (racily clean)', async () => {
    const file = join(dir, 'fresh.bin');
    await writeFile(file, 'draft-1');
    const { mtime } = await stat(file);
    const cache = new DigestStatCache(dir);
    expect(await digestFile(file, cache)).toBe(sha('draft-1'));
    await sneakyRewrite(file, 'draft-2', mtime);
    expect(await digestFile(file, cache)).toBe(sha('draft-2'));
  });

  test('persists digests for the next process in digests.json', async () => {
    const file = join(dir, 'tokenizer.json');
    const mtime = await oldFile(file, 'tok-v1');
    await digestFile(file, new DigestStatCache(dir));
    await sneakyRewrite(file, 'tok-v2', mtime);
    expect(await digestFile(file, new DigestStatCache(dir))).toBe(sha('tok-v1'));
    const stored = JSON.parse(await readFile(join(dir, 'digests.json'), 'utf8')) as Record<string, { digest: string }>;
    expect(stored[file]?.digest).toBe(sha('tok-v1'));
  });

  test('treats a damaged digests.json as empty and rewrites it', async () => {
    const file = join(dir, 'data.txt');
    await oldFile(file, 'text');
    await writeFile(join(dir, 'digests.json'), '{"half": ');
    expect(await digestFile(file, new DigestStatCache(dir))).toBe(sha('text'));
    expect(Object.keys(JSON.parse(await readFile(join(dir, 'digests.json'), 'utf8')) as object)).toEqual([file]);
  });

  test('merges entries written by another process instead of dropping them', async () => {
    const [x, y, z] = ['x.bin', 'y.bin', 'z.bin'].map((n) => join(dir, n)) as [string, string, string];
    for (const f of [x, y, z]) await oldFile(f, f);
    const first = new DigestStatCache(dir);
    const second = new DigestStatCache(dir);
    await digestFile(x, second);
    await digestFile(y, first);
    // second's in-memory view predates y; its write must still keep y
    await digestFile(z, second);
    const stored = JSON.parse(await readFile(join(dir, 'digests.json'), 'utf8')) as Record<string, { digest: string }>;
    expect(Object.keys(stored).sort()).toEqual([x, y, z].sort());
  });

  test('still returns the digest when the cache directory cannot be written', async () => {
    const file = join(dir, 'data.txt');
    await oldFile(file, 'text');
    await writeFile(join(dir, 'not-a-dir'), '');
    expect(await digestFile(file, new DigestStatCache(join(dir, 'not-a-dir')))).toBe(sha('text'));
  });
});
