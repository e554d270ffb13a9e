// A full disk: the store and the outputs on a 16 MiB tmpfs (full-disk.ts). Runs as root, as CI does; skipped
// elsewhere with the reason printed, and a failure when QUANTFORGE_REQUIRE_SHARED=1 and root cannot mount.

import { expect, test } from 'vitest';
import { describeShared } from '../e2e/shared.js';
import { fullDiskCampaign, mountTmpfs, type Mount } from './full-disk.js';

const SIZE = 16 << 20;

describeShared('a full disk', () => {
  const mount: Mount = mountTmpfs(SIZE);
  const required = process.env['QUANTFORGE_REQUIRE_SHARED'] === '1' && process.getuid?.() === 0;
  if ('reason' in mount && !required) console.log(`skipping the full-disk tests: ${mount.reason}`);

  test.skipIf('reason' in mount && !required)('runs that run out of space exit 1 naming the path, lose no entry and keep the previous outputs loadable', async () => {
    if ('reason' in mount) throw new Error(`QUANTFORGE_REQUIRE_SHARED=1 as root, but ${mount.reason}`);
    try {
      // no room at all, room for a third of the new entries, room for the entries but not the first output
      const report = await fullDiskCampaign(mount.dir, [0, 0.3, 'outputs']);
      console.log(report.runs.map((r) => `free ${(r.freeBytes / 1024).toFixed(0)} KiB → exit ${r.code} at ${r.where}: ${r.message}`).join('\n'));
      expect(report.problems).toEqual([]);
      expect(report.runs.map((r) => r.code)).toEqual([1, 1, 1]);
      expect(report.runs.every((r) => r.evalPerplexity !== undefined)).toBe(true);
      expect(report.runs[2]!.where).toBe('outputs');
      expect(report.final).toEqual({ code: 0, damaged: 0, leftovers: [] });
    } finally {
      mount.unmount();
    }
  });
});
