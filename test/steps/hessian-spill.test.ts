import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { SPILL_BYTES, spillHessian } from '../../src/steps/hessian-spill.js';

const entry = await mkdtemp(join(tmpdir(), 'qf-spill-entry-'));
afterAll(() => rm(entry, { recursive: true, force: true }));
const spillDirs = (): Promise<string[]> => readdir(entry);

describe('spillHessian', () => {
  for (const [what, values] of [['a file', SPILL_BYTES / 8 + 3], ['memory', 1000]] as const) {
    test(`restores H's bits after its buffer was overwritten (kept in ${what}), and close leaves nothing in the entry directory`, async () => {
      const h = Float64Array.from({ length: values }, (_, i) => Math.sin(i) * 1e3 + i / 7);
      const keep = Float64Array.from(h);
      const before = await spillDirs();
      const spill = await spillHessian(h, entry);
      expect((await spillDirs()).length - before.length).toBe(what === 'a file' ? 1 : 0);
      h.fill(-1);
      await spill.restore(h);
      expect(Buffer.from(h.buffer).equals(Buffer.from(keep.buffer))).toBe(true);
      await spill.close();
      expect(await spillDirs()).toEqual(before);
    });
  }
});
