// Accuracy against independent references: every mission method on the three shared models, with the
// reference protocol (../shared/reference/README.md: 128 calibration windows of 256 tokens, every full
// evaluation window), through the real CLI; each quantized perplexity is compared with the torch
// reference's. Runs are incremental (one step cache under .quantforge/accuracy), so a rerun after a change
// recomputes only what the change touched. Each model's fp32 perplexity on its whole evaluation file is also
// checked through `quantforge eval` (within 0.2% of the reference: the e2e suite scores only leading windows).
// Exit 1 when a method is above `--tolerance` × its reference or an fp32 perplexity is off by more than 0.2%.
// Usage: npm run build && npx tsx bench/accuracy.ts [--models a,b] [--methods x,y] [--cache-dir DIR] [--md FILE]

import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { table } from './util.js';

interface ReferenceModel {
  model: string;
  calibration: { dataset: string; samples: number; seq_len: number };
  evaluation: { dataset: string; seq_len: number; windows: number };
  perplexity: Record<string, number>;
  quantize_seconds: Record<string, number>;
  autoround_iters: number;
}

const repo = resolve(import.meta.dirname, '..');
const shared = resolve(repo, '../shared');
const { values } = parseArgs({
  options: {
    models: { type: 'string' },
    methods: { type: 'string' },
    'cache-dir': { type: 'string', default: join(repo, '.quantforge/accuracy') },
    md: { type: 'string' },
    tolerance: { type: 'string', default: '1.01' },
  },
});
const reference = JSON.parse(readFileSync(join(shared, 'reference/perplexity.json'), 'utf8')) as Record<string, ReferenceModel>;
const tolerance = Number(values.tolerance);

/** each reference key as quantforge stages (llm-compressor parameter names; ignore lm_head as the references do) */
function stages(method: string, ref: ReferenceModel): string | undefined {
  const q = (kind: string, scheme: string, extra = ''): string => `  - { kind: ${kind}, scheme: ${scheme}, targets: [Linear], ignore: [lm_head]${extra} }`;
  switch (method) {
    case 'rtn-w4a16': return q('rtn', 'W4A16');
    case 'rtn-w4a16-asym': return q('rtn', 'W4A16_ASYM');
    case 'rtn-w8a8': return q('rtn', 'W8A8');
    case 'gptq-w4a16': return q('gptq', 'W4A16', ', actorder: static, block_size: 128, dampening_frac: 0.01');
    case 'simple-ptq-w8a8': return q('gptq', 'W8A8', ', dampening_frac: 0.0');
    case 'awq-w4a16-asym': return q('awq', 'W4A16_ASYM', ', duo_scaling: both, n_grid: 20');
    case 'sq-w8a8': return `  - { kind: smoothquant, smoothing_strength: 0.8 }\n${q('rtn', 'W8A8')}`;
    case 'autoround-w4a16': return q('autoround', 'W4A16', `, iters: ${ref.autoround_iters}`);
    default: return undefined;
  }
}

function recipe(ref: ReferenceModel, method: string): string {
  const abs = (p: string): string => JSON.stringify(resolve(repo, p));
  return [
    'quantforge: 1',
    `model: ${abs(ref.model)}`,
    `calibration: { dataset: ${abs(ref.calibration.dataset)}, samples: ${ref.calibration.samples}, seq_len: ${ref.calibration.seq_len} }`,
    'stages:',
    stages(method, ref),
    'evaluate:',
    `  perplexity: { dataset: ${abs(ref.evaluation.dataset)}, seq_len: ${ref.evaluation.seq_len} }`,
    '  kl: false',
    '',
  ].join('\n');
}

interface Outcome {
  perplexity: number | undefined;
  fp: number | undefined;
  /** seconds of the stages' steps that ran now (captures, transforms, quantization), 0 when cached */
  quantizeS: number;
  error?: string;
}

function run(file: string, cacheDir: string): Outcome {
  const r = spawnSync(process.execPath, [join(repo, 'bin/quantforge.js'), 'run', file, '--json', '--cache-dir', cacheDir], { encoding: 'utf8', maxBuffer: 1 << 28 });
  const events = r.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  const summary = events.find((e) => e['event'] === 'summary') as { metrics?: { perplexity?: Record<string, number> } } | undefined;
  const quantizeMs = events
    .filter((e) => e['event'] === 'step-done' && e['result'] === 'ran' && String(e['group']).startsWith('stage '))
    .reduce((s, e) => s + Number(e['ms']), 0);
  const failed = events.find((e) => e['event'] === 'step-failed');
  return {
    perplexity: summary?.metrics?.perplexity?.['quantized'],
    fp: summary?.metrics?.perplexity?.['fp'],
    quantizeS: quantizeMs / 1000,
    ...(r.status !== 0 ? { error: failed ? String(failed['message']) : r.stderr.trim().split('\n').pop() } : {}),
  };
}

const FP32_TOLERANCE = 0.002;

/** the model's fp32 perplexity on its whole evaluation file, as `quantforge eval` computes it */
function evalFp32(ref: ReferenceModel): number | string {
  const r = spawnSync(
    process.execPath,
    [join(repo, 'bin/quantforge.js'), 'eval', '--model', resolve(repo, ref.model), '--dataset', resolve(repo, ref.evaluation.dataset), '--seq-len', String(ref.evaluation.seq_len), '--json', '--device', 'cpu'],
    { encoding: 'utf8', maxBuffer: 1 << 24 },
  );
  if (r.status !== 0) return r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`;
  const out = JSON.parse(r.stdout) as { perplexity: number; windows: number };
  if (out.windows !== ref.evaluation.windows) return `${out.windows} windows, the reference scored ${ref.evaluation.windows}`;
  return out.perplexity;
}

const models = values.models ? values.models.split(',') : Object.keys(reference);
const work = join(values['cache-dir'], 'recipes');
mkdirSync(work, { recursive: true });
const rows: string[][] = [];
const fpRows: string[][] = [];
let worst = 0;
let failures = 0;
for (const name of models) {
  const ref = reference[name];
  if (!ref) throw new Error(`no reference for model "${name}"; known: ${Object.keys(reference).join(', ')}`);
  const fp = evalFp32(ref);
  const fpRef = ref.perplexity['fp32']!;
  const fpOk = typeof fp === 'number' && Math.abs(fp - fpRef) / fpRef < FP32_TOLERANCE;
  if (!fpOk) failures++;
  fpRows.push([name, typeof fp === 'number' ? fp.toFixed(4) : `failed: ${fp}`, fpRef.toFixed(4), typeof fp === 'number' ? (fp / fpRef).toFixed(5) : '–', fpOk ? 'yes' : 'NO']);
  process.stderr.write(`${name} fp32 (quantforge eval, ${ref.evaluation.windows} windows): ${typeof fp === 'number' ? fp.toFixed(4) : fp} (reference ${fpRef})\n`);
  const methods = values.methods ? values.methods.split(',') : Object.keys(ref.perplexity).filter((m) => m !== 'fp32');
  for (const method of methods) {
    if (!stages(method, ref)) throw new Error(`unknown method "${method}"`);
    const file = join(work, `${name}-${method}.yaml`);
    writeFileSync(file, recipe(ref, method));
    const t0 = performance.now();
    const o = run(file, values['cache-dir']);
    const wall = (performance.now() - t0) / 1000;
    const refPpl = ref.perplexity[method]!;
    const ratio = o.perplexity === undefined ? NaN : o.perplexity / refPpl;
    if (Number.isFinite(ratio)) worst = Math.max(worst, ratio);
    if (!(ratio <= tolerance)) failures++;
    rows.push([
      name,
      method,
      o.perplexity?.toFixed(4) ?? `failed: ${o.error ?? '?'}`,
      refPpl.toFixed(4),
      Number.isFinite(ratio) ? ratio.toFixed(4) : '–',
      Number.isFinite(ratio) && ratio <= tolerance ? 'yes' : 'NO',
      o.fp !== undefined ? `${o.fp.toFixed(4)} (ref ${ref.perplexity['fp32']!.toFixed(4)})` : '–',
      o.quantizeS > 0 ? o.quantizeS.toFixed(1) : 'cached',
      String(ref.quantize_seconds[method] ?? '–'),
    ]);
    process.stderr.write(`${name} ${method}: ${o.perplexity?.toFixed(4) ?? o.error} (reference ${refPpl}) in ${wall.toFixed(0)} s\n`);
  }
}
const md = table(['model', 'method', 'quantforge ppl', 'reference ppl', 'ratio', `≤ ${tolerance}×`, 'fp32 ppl', 'quantize s (ran now)', 'reference quantize s'], rows);
const fpMd = table(['model', 'fp32 ppl (quantforge eval)', 'reference', 'ratio', `within ${FP32_TOLERANCE * 100}%`], fpRows);
console.log(fpMd);
console.log('');
console.log(md);
console.log(`\nworst ratio ${worst.toFixed(4)}; ${failures} check(s) failed`);
if (values.md) writeFileSync(values.md, `${fpMd}\n\n${md}\n`);
process.exitCode = failures > 0 ? 1 : 0;
