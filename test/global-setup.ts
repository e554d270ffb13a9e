// e2e tests run the compiled CLI (bin/quantforge.js → dist/): build it once so it matches the sources.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export default function setup(): () => void {
  const root = resolve(import.meta.dirname, '..');
  execFileSync(process.execPath, [resolve(root, 'node_modules/typescript/bin/tsc'), '-p', resolve(root, 'tsconfig.build.json')], { stdio: 'inherit' });
  // one step cache for the whole test run, so e2e files share the FP evaluations and calibration captures
  const cache = mkdtempSync(join(tmpdir(), 'qf-test-cache-'));
  process.env['QUANTFORGE_TEST_CACHE'] = cache;
  return () => rmSync(cache, { recursive: true, force: true });
}
