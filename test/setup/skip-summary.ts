// A vitest reporter that ends the run with one line saying how many tests were skipped and why, so a green
// `npm test` that skipped the real-model tests (no ../shared) is visible. CI sets QUANTFORGE_REQUIRE_SHARED=1
// and QUANTFORGE_REQUIRE_WEBGPU=1, which turn those skips into failures (test/e2e/shared.ts,
// test/ort/webgpu-available.ts, test/quant/ggml-live.test.ts). A skipped test's reason is read from its file:
// one that guards on ../shared, a C compiler or WebGPU was skipped for that; anything else for its own condition.

import { existsSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import type { Reporter, TestModule } from 'vitest/node';

const REPO = resolve(import.meta.dirname, '../..');
const SHARED = resolve(process.env['QUANTFORGE_SHARED_DIR'] ?? resolve(REPO, '../shared'));

type Reason = 'shared' | 'compiler' | 'webgpu' | 'other';

function reasonOf(file: string): Reason {
  const text = readFileSync(file, 'utf8');
  if (/needs a C compiler/.test(text)) return 'compiler';
  if (/describeShared|haveShared|REQUIRE_SHARED|SHARED_DIR/.test(text)) return 'shared';
  if (/describeWebgpu|webgpu\.ok/.test(text)) return 'webgpu';
  return 'other';
}

export function skipLine(counts: Map<string, number>, total: number, sharedPresent: boolean): string | undefined {
  const skipped = [...counts.values()].reduce((a, b) => a + b, 0);
  if (skipped === 0) return undefined;
  const by: Record<Reason, [string, number][]> = { shared: [], compiler: [], webgpu: [], other: [] };
  for (const [file, n] of counts) {
    const reason = reasonOf(resolve(REPO, file));
    // with ../shared present, its guarded tests were skipped for another reason (a -t filter, their own condition)
    by[reason === 'shared' && sharedPresent ? 'other' : reason].push([file, n]);
  }
  const sum = (xs: [string, number][]): number => xs.reduce((a, [, n]) => a + n, 0);
  const files = (xs: [string, number][]): string => xs.map(([f, n]) => `${f} ${n}`).join(', ');
  const why = {
    shared: `need ../shared (no models/ and data/ at ${SHARED}; QUANTFORGE_REQUIRE_SHARED=1 fails them instead)`,
    compiler: 'need a C compiler (QUANTFORGE_REQUIRE_SHARED=1 fails them instead)',
    webgpu: 'need a WebGPU adapter (QUANTFORGE_REQUIRE_WEBGPU=1 fails them instead)',
    other: 'skipped by their own condition or a name filter',
  };
  const parts = (['shared', 'compiler', 'webgpu', 'other'] as const).filter((k) => by[k].length).map((k) => `${sum(by[k])} ${why[k]} [${files(by[k])}]`);
  return `skipped ${skipped} of ${total} tests: ${parts.join('; ')}`;
}

export default class SkipSummary implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const counts = new Map<string, number>();
    let total = 0;
    for (const m of modules) {
      for (const t of m.children.allTests()) {
        total++;
        if (t.result().state !== 'skipped') continue;
        const file = relative(REPO, m.moduleId);
        counts.set(file, (counts.get(file) ?? 0) + 1);
      }
    }
    const line = skipLine(counts, total, existsSync(join(SHARED, 'models')) && existsSync(join(SHARED, 'data')));
    if (line) process.stdout.write(`\n${line}\n`);
  }
}
