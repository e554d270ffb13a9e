// A fully cached run loads no step implementation and no onnxruntime: the registries declare each step kind
// (kind, version) and import its module on first run (src/steps/registry.ts, src/outputs/*/output.ts), so an
// unchanged rerun pays for the plan and the cache lookups only (bench/noop.ts times it). The CLI runs as a user
// runs it, in a child process, under a preload that records every module it loads.

import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CLI, REPO } from '../conformance/cli-run.js';
import { fakeBuild, type Summary } from './build-harness.js';
import { fakeImpls, fakeRecipe, makeFakeModel } from './fake-steps.js';

const TRACE_PRELOAD = resolve(import.meta.dirname, 'fixtures/module-trace.mjs');
const DIST = join(REPO, 'dist', 'src');

/** the compiled modules the step and output registries import on first use (every `import('./…')` in them) */
function lazyModules(): string[] {
  const src = join(REPO, 'src');
  const declarers = ['steps/registry.ts', ...readdirSync(join(src, 'outputs'), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => `outputs/${d.name}/output.ts`)];
  return declarers.flatMap((file) =>
    [...readFileSync(join(src, file), 'utf8').matchAll(/\bimport\(\s*'(\.[^']+)'\s*\)/g)].map((m) => join(DIST, dirname(file), m[1]!)),
  );
}

function runTraced(cwd: string, trace: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const args = ['--import', TRACE_PRELOAD, CLI, 'run', 'recipe.yaml', '--json', '--cache-dir', 'cache', '--device', 'cpu'];
  return new Promise((done) => {
    execFile(process.execPath, args, { cwd, env: { ...process.env, CI: '1', QF_MODULE_TRACE: trace } }, (err, stdout, stderr) =>
      done({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

let dir: string;
let first: Summary;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'qf-lazy-'));
  await makeFakeModel(join(dir, 'model'), 2);
  writeFileSync(join(dir, 'recipe.yaml'), fakeRecipe('  - { kind: smoothquant, smoothing_strength: 0.5 }\n  - { kind: gptq, scheme: W8A8, ignore: [lm_head] }', '  - { format: onnx, path: ./out/onnx }\n'));
  // every entry in the store, made by counting fakes under the real planner, keys and versions
  ({ summary: first } = await fakeBuild(join(dir, 'recipe.yaml'), join(dir, 'cache'), fakeImpls(new Map())));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('a fully cached run', () => {
  test('loads neither a step implementation nor onnxruntime', async () => {
    expect(first.failed).toBe(0);
    const trace = join(dir, 'modules.txt');
    const r = await runTraced(dir, trace);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop()!) as Summary;
    expect(summary).toMatchObject({ ran: 0, cached: first.ran, failed: 0 });

    const loaded = readFileSync(trace, 'utf8').split('\n').filter(Boolean).map((u) => (u.startsWith('file:') ? fileURLToPath(u) : u));
    // the trace sees the compiled modules the run needs, the registries among them
    expect(loaded).toContain(join(DIST, 'steps', 'registry.js'));
    expect(loaded).toContain(join(DIST, 'outputs', 'registry.js'));
    const lazy = lazyModules();
    expect(lazy).toContain(join(DIST, 'steps', 'gptq.js'));
    expect(lazy).toContain(join(DIST, 'outputs', 'onnx', 'export-step.js'));
    expect(loaded.filter((p) => lazy.includes(p))).toEqual([]);
    expect(loaded.filter((p) => p.includes('onnxruntime'))).toEqual([]);
    expect(loaded).not.toContain(join(DIST, 'ort', 'session.js'));
  });
});
