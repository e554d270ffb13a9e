// Sweep sharing: wall time of the 5-value smoothing sweep (examples/sweep-smoothing) against one single
// variant, each from an empty cache, through the real CLI, on the same pre-generated example model.
// Usage: npx tsx bench/sweep.ts

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { writeExampleModel } from '../src/steps/example-model.js';
import { Runtime } from '../src/ort/session.js';
import { median, table } from './util.js';

const RUNS = 3;
const repo = resolve(import.meta.dirname, '..');
const cli = join(repo, 'bin/quantforge.js');
const dir = mkdtempSync(join(tmpdir(), 'qf-bench-sweep-'));
const rt = new Runtime({ device: 'cpu' });
await writeExampleModel(rt, join(dir, 'model'), { size: 'tiny', seed: 0, dtype: 'f32' });
await rt.close();
const recipe = readFileSync(join(repo, 'examples/sweep-smoothing/recipe.yaml'), 'utf8').replace(/^model: .*$/m, 'model: ./model');
writeFileSync(join(dir, 'sweep.yaml'), recipe);
writeFileSync(join(dir, 'single.yaml'), recipe.replace(/sweep:\n.*\n/, ''));

function timed(file: string, cache: string): { ms: number; summary: { ran: number; steps: Record<string, { ran: number }> } } {
  const t0 = performance.now();
  const out = execFileSync(process.execPath, [cli, 'run', file, '--json', '--cache-dir', cache], { cwd: dir, encoding: 'utf8', maxBuffer: 1 << 26 });
  return { ms: performance.now() - t0, summary: JSON.parse(out.trim().split('\n').pop()!) };
}

const single: number[] = [];
const sweep: number[] = [];
let last: ReturnType<typeof timed> | undefined;
for (let i = 0; i < RUNS; i++) {
  single.push(timed('single.yaml', join(dir, `cache-single-${i}`)).ms);
  last = timed('sweep.yaml', join(dir, `cache-sweep-${i}`));
  sweep.push(last.ms);
}
const s = last!.summary.steps;
console.log(table(['build', 'median s', 'steps run'], [
  ['one variant (α = 0.8)', (median(single) / 1000).toFixed(1), ''],
  ['sweep of 5 (α = 0.5 … 0.9)', (median(sweep) / 1000).toFixed(1), `${last!.summary.ran} (capture ${s['capture']?.ran}, smoothquant ${s['smoothquant']?.ran}, rtn ${s['rtn']?.ran}, evaluate ${s['evaluate']?.ran})`],
]));
console.log(`\nratio sweep / single: ${(median(sweep) / median(single)).toFixed(2)}× (median of ${RUNS} runs each, empty caches, example model pre-generated)`);
rmSync(dir, { recursive: true, force: true });
