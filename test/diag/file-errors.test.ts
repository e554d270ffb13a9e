// Errors of quantforge's own files name the file: a JSON file that does not parse, a full disk.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { toFailure, ReasonedError } from '../../src/diag/failure.js';
import { DiskFullError, JsonFileError, onFullDisk, readJsonFile, readJsonFileAsync } from '../../src/diag/file-errors.js';

const enospc = (extra: Record<string, string> = {}): NodeJS.ErrnoException =>
  Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write', ...extra });

describe('readJsonFile', () => {
  test('a truncated file is a json-file-invalid error naming the file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'qf-json-'));
    const file = join(dir, 'quantforge.lock.json');
    await writeFile(file, '{"output": {"key": "ab');
    try {
      expect(() => readJsonFile(file)).toThrow(JsonFileError);
      expect(() => readJsonFile(file)).toThrow(`${file}: not valid JSON (`);
      await expect(readJsonFileAsync(file)).rejects.toMatchObject({ reason: 'json-file-invalid', file });
      await writeFile(file, '{"ok": 1}');
      expect(readJsonFile(file)).toEqual({ ok: 1 });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('a full disk', () => {
  test('an ENOSPC error is a disk-full failure naming the path it wrote', () => {
    expect(toFailure(enospc({ path: '/mnt/cache/x' }))).toMatchObject({ reason: 'disk-full', message: 'no space left on /mnt/cache/x' });
    // copyFile names its source as path and its destination as dest: the destination is what filled up
    expect(toFailure(enospc({ path: '/a', dest: '/mnt/out/b' }))).toMatchObject({ message: 'no space left on /mnt/out/b' });
    expect(toFailure(Object.assign(new Error('quota'), { code: 'EDQUOT' })).reason).toBe('disk-full');
    expect(toFailure(new Error('other')).reason).toBe('unknown-error-thrown');
  });

  test('onFullDisk names the directory being written, also for a failure sent by the compute worker', () => {
    const fromWorker = ReasonedError.from({ reason: 'disk-full', message: 'no space left on the device' });
    for (const e of [enospc(), fromWorker]) {
      const named = onFullDisk(e, '/mnt/cache');
      expect(named).toBeInstanceOf(DiskFullError);
      expect((named as Error).message).toBe('no space left on /mnt/cache');
    }
    const other = new Error('EACCES');
    expect(onFullDisk(other, '/mnt/cache')).toBe(other);
  });
});
