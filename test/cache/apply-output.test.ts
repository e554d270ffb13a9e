// Publishing an entry as an output directory: the new directory is whole before it takes the old one's
// place, a failure leaves the old one in place, and what a killed writer left beside it is tidied.

import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { recoverOutputDir, replaceDirWithCopy } from '../../src/cache/apply-output.js';

let work: string;
let src: string;
let dest: string;
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'qf-apply-'));
  src = join(work, 'entry');
  dest = join(work, 'out', 'model');
  await mkdir(join(src, 'onnx'), { recursive: true });
  await writeFile(join(src, 'config.json'), '{"new": true}');
  await writeFile(join(src, 'onnx', 'model.onnx'), 'graph');
});
afterEach(() => rm(work, { recursive: true, force: true }));

async function deadPid(): Promise<number> {
  const p = spawn(process.execPath, ['-e', '']);
  await new Promise((r) => p.on('exit', r));
  return p.pid!;
}

async function oldOutput(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.json'), '{"old": true}');
  await writeFile(join(dir, 'quantforge.lock.json'), '{"output": {"key": "old"}}');
}

describe('replaceDirWithCopy', () => {
  test('the new directory holds the copies and the written files, and the old one is gone', async () => {
    await oldOutput(dest);
    await replaceDirWithCopy(src, dest, { files: ['config.json', 'onnx/model.onnx'], written: { 'quantforge.lock.json': '{"output": {"key": "new"}}' } });
    expect(await readFile(join(dest, 'config.json'), 'utf8')).toBe('{"new": true}');
    expect(await readFile(join(dest, 'onnx', 'model.onnx'), 'utf8')).toBe('graph');
    expect(await readFile(join(dest, 'quantforge.lock.json'), 'utf8')).toBe('{"output": {"key": "new"}}');
    expect(await readdir(join(work, 'out'))).toEqual(['model']);
  });

  test('a copy that fails leaves the old directory as it was and nothing beside it', async () => {
    await oldOutput(dest);
    await expect(replaceDirWithCopy(src, dest, { files: ['config.json', 'missing.bin'] })).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await readFile(join(dest, 'config.json'), 'utf8')).toBe('{"old": true}');
    expect(await readdir(join(work, 'out'))).toEqual(['model']);
  });
});

describe('recoverOutputDir', () => {
  test('a writer killed between its two renames: the old directory is put back, its staging copy deleted', async () => {
    const pid = await deadPid();
    await oldOutput(`${dest}.old-${pid}-0badcafe`);
    await mkdir(`${dest}.tmp-${pid}-0badcafe`, { recursive: true });
    await recoverOutputDir(dest);
    expect(await readFile(join(dest, 'config.json'), 'utf8')).toBe('{"old": true}');
    expect(await readdir(join(work, 'out'))).toEqual(['model']);
  });

  test('copies of a dead writer beside a complete directory are deleted; those of a live one stay', async () => {
    await oldOutput(dest);
    const pid = await deadPid();
    await mkdir(`${dest}.old-${pid}-0badcafe`, { recursive: true });
    await mkdir(`${dest}.tmp-${process.pid}-0badcafe`, { recursive: true });
    await recoverOutputDir(dest);
    expect((await readdir(join(work, 'out'))).sort()).toEqual(['model', `model.tmp-${process.pid}-0badcafe`]);
    expect(existsSync(join(dest, 'quantforge.lock.json'))).toBe(true);
  });
});
