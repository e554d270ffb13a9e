// Evaluate once: wall time of the `evaluate/fp` and `evaluate/quantized` steps of a build (rtn W4A16, perplexity
// with KL on the first --windows windows of each shared model's evaluation file), through the CLI from an empty
// cache, for this tree and, with --base DIR (another built checkout), that tree, interleaved run by run.
// Before evaluate-once the quantized step ran the fp model again for KL; the ratio quantized / fp shows it.
// Usage: npx tsx bench/evaluate.ts [--base DIR] [--runs 3] [--windows 300] [--models a,b]

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { median, table } from './util.js';

const { values } = parseArgs({
  options: {
    base: { type: 'string' },
    runs: { type: 'string', default: '3' },
    windows: { type: 'string', default: '300' },
    models: { type: 'string', default: 'babyllama-char105,wiki-llama-8m' },
  },
});
const HERE = resolve(import.meta.dirname, '..');
const SHARED = resolve(HERE, '../shared');
const EVAL: Record<string, string> = { 'stories260K': 'tinystories-eval.txt', 'babyllama-char105': 'tinystories-eval.txt', 'wiki-llama-8m': 'wikitext-2-raw-test.txt' };
const STEPS = ['tokenize/evaluation', 'evaluate/fp', 'evaluate/quantized'] as const;

/** one build with the CLI of the tree at `root`: ms per evaluation step, and the metrics */
function build(root: string, model: string, windows: number): { ms: Record<string, number>; kl: number; ppl: number } {
  const dir = mkdtempSync(join(tmpdir(), 'qf-bench-eval-'));
  try {
    const recipe = join(dir, 'recipe.yaml');
    writeFileSync(recipe, `quantforge: 1
model: ${join(SHARED, 'models', model)}
stages:
  - { kind: rtn, scheme: W4A16, ignore: [lm_head] }
evaluate:
  perplexity: { dataset: ${join(SHARED, 'data', EVAL[model]!)}, seq_len: 256, max_windows: ${windows} }
`);
    const out = execFileSync(process.execPath, [join(root, 'bin/quantforge.js'), 'run', recipe, '--json', '--cache-dir', join(dir, 'cache')], { encoding: 'utf8', maxBuffer: 64 * 2 ** 20, stdio: ['ignore', 'pipe', 'ignore'] });
    const ms: Record<string, number> = {};
    let kl = NaN;
    let ppl = NaN;
    for (const line of out.split('\n')) {
      if (!line.startsWith('{')) continue;
      const e = JSON.parse(line) as { event: string; id?: string; ms?: number; metrics?: Record<string, unknown> };
      if (e.event === 'step-done' && e.id && e.ms !== undefined) ms[e.id] = e.ms;
      if (e.event === 'step-done' && e.id === 'evaluate/quantized') [kl, ppl] = [e.metrics?.['kl'] as number, e.metrics?.['perplexity'] as number];
    }
    for (const s of STEPS) if (ms[s] === undefined) throw new Error(`${root}: no ${s} in the build`);
    return { ms, kl, ppl };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const trees: [string, string][] = [['this tree', HERE], ...(values.base ? [['base', resolve(values.base)] as [string, string]] : [])];
const runs = Number(values.runs);
const windows = Number(values.windows);
const load0 = loadavg()[0]!;
const rows: string[][] = [];
for (const model of values.models.split(',')) {
  const got = new Map<string, ReturnType<typeof build>[]>(trees.map(([n]) => [n, []]));
  for (let r = 0; r < runs; r++) {
    for (const [name, root] of trees) {
      process.stderr.write(`${model} ${name} run ${r + 1}/${runs}\n`);
      got.get(name)!.push(build(root, model, windows));
    }
  }
  for (const [name] of trees) {
    const bs = got.get(name)!;
    const m = (s: string): number => median(bs.map((b) => b.ms[s]!));
    const ratio = median(bs.map((b) => b.ms['evaluate/quantized']! / b.ms['evaluate/fp']!));
    rows.push([model, name, (m('tokenize/evaluation') / 1000).toFixed(2), (m('evaluate/fp') / 1000).toFixed(2), (m('evaluate/quantized') / 1000).toFixed(2), `**${ratio.toFixed(2)}×**`, bs[0]!.ppl.toFixed(4), bs[0]!.kl.toPrecision(6)]);
  }
}
console.log(table(['model', 'tree', 'tokenize s', 'evaluate/fp s', 'evaluate/quantized s', 'quantized / fp', 'quantized ppl', 'KL'], rows));
console.log(`\n${windows} windows × 256 tokens, median of ${runs} runs per tree, interleaved; load average ${load0.toFixed(2)} at start, ${loadavg()[0]!.toFixed(2)} at end`);
