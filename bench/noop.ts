// The cost of doing nothing: wall time of `quantforge run` (a fresh process, as a user types it) on an unchanged
// recipe whose 20-layer plan is fully cached, compared with `node -e ''` started the same way in the same run.
// Usage: npx tsx bench/noop.ts [--base DIR]   (DIR: another built checkout, timed the same way, interleaved)

import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { writeSafetensors } from '../src/formats/safetensors.js';
import { exampleConfigJson, exampleTensor, exampleTensorNames } from '../src/model/example-model.js';
import { exampleTokenizer } from '../src/model/example-tokenizer.js';
import { parseModelConfig } from '../src/model/config.js';
import { median, table } from './util.js';

const RUNS = 7;
const LAYERS = 20;
const cli = resolve(import.meta.dirname, '../bin/quantforge.js');
const dir = mkdtempSync(join(tmpdir(), 'qf-bench-noop-'));

// a real (small) 20-layer Llama: the tiny example's generator with 20 layers and hidden 64
const { tokenizer, config: tokConfig, vocabSize } = exampleTokenizer(256);
const raw = { ...exampleConfigJson('tiny', vocabSize, 'f32'), hidden_size: 64, intermediate_size: 128, num_hidden_layers: LAYERS, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16, max_position_embeddings: 256 };
const cfg = parseModelConfig(raw);
const model = join(dir, 'model');
execFileSync('mkdir', ['-p', model]);
writeFileSync(join(model, 'config.json'), JSON.stringify(raw));
writeFileSync(join(model, 'tokenizer.json'), JSON.stringify(tokenizer));
writeFileSync(join(model, 'tokenizer_config.json'), JSON.stringify(tokConfig));
await writeSafetensors(join(model, 'model.safetensors'), exampleTensorNames(cfg).map((n) => [n, exampleTensor(cfg, 0, n)] as const));
writeFileSync(join(dir, 'calib.txt'), 'the cat saw the dog and the bird in the park. '.repeat(400));
writeFileSync(
  join(dir, 'recipe.yaml'),
  `quantforge: 1
model: ./model
calibration: { dataset: ./calib.txt, samples: 8, seq_len: 64 }
stages:
  - { kind: smoothquant, smoothing_strength: 0.5 }
  - { kind: gptq, scheme: W8A8, ignore: [lm_head] }
evaluate:
  perplexity: { dataset: ./calib.txt, seq_len: 64, max_windows: 4 }
outputs:
  - { format: compressed-tensors, path: ./out/model }
`,
);

const baseIdx = process.argv.indexOf('--base');
const baseCli = baseIdx > 0 ? resolve(process.argv[baseIdx + 1]!, 'bin/quantforge.js') : undefined;
const baseDir = baseCli ? mkdtempSync(join(tmpdir(), 'qf-bench-noop-base-')) : undefined;
if (baseDir) cpSync(dir, baseDir, { recursive: true });

// each tree remembers its provider probes under its own TMPDIR (src/ort/probe-memo.ts), so neither the other tree
// nor other quantforge processes on the machine overwrite its memo and make a timed run probe again
const tmpOf = (cwd: string): string => {
  const t = join(cwd, 'tmp');
  mkdirSync(t, { recursive: true });
  return t;
};
const time = (args: string[], cwd = dir): number => {
  const env = { ...process.env, TMPDIR: tmpOf(cwd) };
  const t0 = performance.now();
  execFileSync(process.execPath, args, { cwd, stdio: 'ignore', env });
  return performance.now() - t0;
};
const first = time([cli, 'run', 'recipe.yaml', '--json']);
const baseFirst = baseCli ? time([baseCli, 'run', 'recipe.yaml', '--json'], baseDir) : 0;
const noop: number[] = [];
const baseNoop: number[] = [];
const node: number[] = [];
for (let i = 0; i < RUNS; i++) {
  noop.push(time([cli, 'run', 'recipe.yaml', '--json']));
  if (baseCli) baseNoop.push(time([baseCli, 'run', 'recipe.yaml', '--json'], baseDir));
  node.push(time(['-e', '']));
}
const summary = JSON.parse(execFileSync(process.execPath, [cli, 'run', 'recipe.yaml', '--json'], { cwd: dir, encoding: 'utf8', env: { ...process.env, TMPDIR: tmpOf(dir) } }).trim().split('\n').pop()!) as { ran: number; cached: number };
console.log(table(['measurement', 'median ms'], [
  [`first run (${summary.cached} steps, computed)`, first.toFixed(0)],
  ...(baseCli ? [['first run, base', baseFirst.toFixed(0)]] : []),
  [`unchanged rerun (${summary.ran} ran, ${summary.cached} cached)`, median(noop).toFixed(0)],
  ...(baseCli ? [['unchanged rerun, base', median(baseNoop).toFixed(0)]] : []),
  ['`node -e ""` (process start alone)', median(node).toFixed(0)],
]));
console.log(`\n${LAYERS}-layer plan; median of ${RUNS} runs (interleaved); ratio rerun / bare node start: ${(median(noop) / median(node)).toFixed(1)}×; load average ${loadavg()[0]!.toFixed(2)}`);
if (process.env['KEEP']) console.log(`kept ${dir}`);
else {
  rmSync(dir, { recursive: true, force: true });
  if (baseDir) rmSync(baseDir, { recursive: true, force: true });
}
