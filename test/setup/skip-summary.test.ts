// `npm test` without ../shared: the run ends with one line counting the skipped tests and why; with
// QUANTFORGE_REQUIRE_SHARED=1 the same tests fail instead. A child vitest run on one e2e file with
// QUANTFORGE_SHARED_DIR pointing at an empty directory stands for a checkout without ../shared.

import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { skipLine } from './skip-summary.js';

const REPO = resolve(import.meta.dirname, '../..');
const empty = mkdtempSync(join(tmpdir(), 'qf-no-shared-'));
afterAll(() => rmSync(empty, { recursive: true, force: true }));

function vitest(env: Record<string, string>): Promise<{ code: number; out: string }> {
  return new Promise((done) => {
    const args = [resolve(REPO, 'node_modules/vitest/vitest.mjs'), 'run', '--config', 'test/setup/skip-check.config.ts'];
    const childEnv: NodeJS.ProcessEnv = { ...process.env, QUANTFORGE_SHARED_DIR: empty, ...env };
    delete childEnv['QUANTFORGE_REQUIRE_SHARED'];
    if (env['QUANTFORGE_REQUIRE_SHARED']) childEnv['QUANTFORGE_REQUIRE_SHARED'] = env['QUANTFORGE_REQUIRE_SHARED'];
    delete childEnv['VITEST'];
    execFile(process.execPath, args, { cwd: REPO, env: childEnv }, (err, stdout, stderr) => done({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }));
  });
}

test('without ../shared the run passes and its last line says how many tests were skipped and why', async () => {
  const r = await vitest({});
  expect(r.code).toBe(0);
  const last = r.out.trim().split('\n').at(-1)!;
  expect(last).toMatch(/^skipped 1 of 1 tests: 1 need \.\.\/shared \(no models\/ and data\/ at .*QUANTFORGE_REQUIRE_SHARED=1 fails them instead\) \[test\/e2e\/perplexity\.test\.ts 1\]$/);
});

test('with QUANTFORGE_REQUIRE_SHARED=1 the same tests fail instead of skipping', async () => {
  const r = await vitest({ QUANTFORGE_REQUIRE_SHARED: '1' });
  expect(r.code).toBe(1);
  expect(r.out).toContain('QUANTFORGE_REQUIRE_SHARED=1 but');
  expect(r.out).not.toMatch(/^skipped /m);
});

test('the line groups skipped files by reason', () => {
  const line = skipLine(new Map([['test/e2e/rtn.test.ts', 9], ['test/quant/ggml-live.test.ts', 2], ['test/ort/webgpu.test.ts', 3], ['test/cache/lock.test.ts', 1]]), 100, false);
  expect(line).toMatch(/^skipped 15 of 100 tests: 9 need \.\.\/shared .*\[test\/e2e\/rtn\.test\.ts 9\]; 2 need a C compiler .*\[test\/quant\/ggml-live\.test\.ts 2\]; 3 need a WebGPU adapter .*\[test\/ort\/webgpu\.test\.ts 3\]; 1 skipped by their own condition or a name filter \[test\/cache\/lock\.test\.ts 1\]$/);
  expect(skipLine(new Map(), 100, false)).toBeUndefined();
  // with ../shared present, a skipped e2e test was filtered out, not missing its models
  expect(skipLine(new Map([['test/e2e/rtn.test.ts', 8]]), 9, true)).toBe('skipped 8 of 9 tests: 8 skipped by their own condition or a name filter [test/e2e/rtn.test.ts 8]');
});
