// Where one AutoRound block's time goes: runs the autoround step on one decoder layer of a model (as the
// recipe does: the reference's calibration windows, W4A16 on every Linear) with onnxruntime's profiler on,
// then sums the profile's per-node kernel times by op type for the block's forward + backward session, and
// splits the step's wall time into onnxruntime (per session) and the rest (JavaScript). Per iteration it also
// prints user and system CPU time and each thread's CPU time (/proc): which threads did the work. The profiler
// adds per-node costs of its own, so `--profiler off` times the loop without it.
//
//   npx tsx bench/autoround-profile.ts [--model wiki-llama-8m] [--layer 0] [--iters 10] [--top 25] [--threads N]
//        [--profiler on|off]
//
// The model is one of ../shared/models; calibration per ../shared/reference/perplexity.json.

import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { presetScheme } from '../src/quant/scheme.js';
import { embed } from '../src/model/embed.js';
import { HfSource } from '../src/model/source.js';
import { loadTokenizer } from '../src/model/tokenizer.js';
import { cutWindows, readDatasetText } from '../src/model/windows.js';
import { Runtime } from '../src/ort/session.js';
import { propagate, writeHidden } from '../src/steps/activations.js';
import { autoroundStep } from '../src/steps/autoround.js';
import type { StepInputDir } from '../src/steps/types.js';
import { tensor } from '../src/tensor.js';
import { threadCpuMs } from './util.js';

const SHARED = resolve(import.meta.dirname, '../../shared');
const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'wiki-llama-8m' },
    layer: { type: 'string', default: '0' },
    iters: { type: 'string', default: '10' },
    top: { type: 'string', default: '25' },
    threads: { type: 'string' },
    profiler: { type: 'string', default: 'on' },
  },
});
const [layerIdx, iters, top] = [Number(values.layer), Number(values.iters), Number(values.top)];
const ref = (JSON.parse(readFileSync(join(SHARED, 'reference/perplexity.json'), 'utf8')) as Record<string, { calibration: { dataset: string; samples: number; seq_len: number } }>)[values.model]!;
const modelDir = join(SHARED, 'models', values.model);
const scratch = mkdtempSync(join(tmpdir(), 'qf-bench-arprof-'));
const profileDir = join(scratch, 'profiles');
const profiled = values.profiler !== 'off';
const rt = new Runtime({ device: 'cpu', ...(profiled ? { profileDir } : {}), ...(values.threads ? { threads: Number(values.threads) } : {}) });
const dirInput = (dir: string): StepInputDir => ({ id: dir, kind: 'bench', dir, result: null });

interface TraceEvent { cat?: string; name?: string; dur?: number; args?: { op_name?: string; input_type_shape?: Record<string, number[]>[] } }

/** per op type: µs summed over every run of the session, and the session's model_run total */
function summarize(file: string): { byOp: Map<string, number>; byNode: Map<string, [string, number, string]>; runUs: number; runs: number } {
  const events = JSON.parse(readFileSync(file, 'utf8')) as TraceEvent[];
  const byOp = new Map<string, number>();
  const byNode = new Map<string, [string, number, string]>();
  let [runUs, runs] = [0, 0];
  for (const e of events) {
    if (e.cat === 'Session' && e.name === 'model_run') [runUs, runs] = [runUs + (e.dur ?? 0), runs + 1];
    if (e.cat !== 'Node' || !e.name?.endsWith('_kernel_time') || !e.args?.op_name) continue;
    const op = e.args.op_name;
    byOp.set(op, (byOp.get(op) ?? 0) + (e.dur ?? 0));
    const node = e.name.replace(/_kernel_time$/, '');
    const shapes = (e.args.input_type_shape ?? []).map((t) => `[${Object.values(t)[0]?.join('×') ?? ''}]`).join(' ');
    byNode.set(node, [op, (byNode.get(node)?.[1] ?? 0) + (e.dur ?? 0), shapes]);
  }
  return { byOp, byNode, runUs, runs };
}

try {
  const c = ref.calibration;
  const src = await HfSource.open(modelDir);
  const cfg = src.config;
  const ids = cutWindows(loadTokenizer(modelDir).encode(readDatasetText(join(SHARED, 'data', c.dataset.split('/').pop()!))), c.seq_len, c.samples);
  const n = ids.dims[0]!;
  let hidden = tensor('float32', [n, c.seq_len, cfg.hiddenSize], embed(await src.tensor(src.arch.embedding), ids.data));
  for (let l = 0; l < layerIdx; l++) hidden = await propagate(rt, cfg, src.arch.layer(cfg, l), await src.layer(l), hidden, new Map());
  const inDir = mkdtempSync(join(scratch, 'in-'));
  await writeHidden(inDir, hidden);
  const weights = presetScheme('W4A16', ['Linear']).weights!;
  const modules = Object.fromEntries(src.arch.layer(cfg, layerIdx).linears.map((l) => [l.local, { weights, input_activations: null }]));
  await src.close();

  // [wall ms, CPU ms, system ms] at each progress call; each thread's CPU ms at the first and the last
  const ticks: [number, number, number][] = [];
  let threads: [Map<string, number>, Map<string, number>] = [new Map(), new Map()];
  const [t0, busy0, cpu0] = [performance.now(), rt.busyMs, process.cpuUsage()];
  const res = (await autoroundStep.run({
    id: `bench/layer.${layerIdx}`,
    params: { layer: layerIdx, modules, iters, lr: 1 / iters, minmax_lr: 1 / iters, batch_size: 8, nsamples: null, enable_minmax_tuning: true, not_use_best_mse: false, seed: 42 },
    inputs: { hidden: dirInput(inDir), reference: dirInput(inDir) },
    files: {},
    modelDir,
    outDir: mkdtempSync(join(scratch, 'out-')),
    runtime: rt,
    progress: (done: number) => {
      const u = process.cpuUsage();
      ticks.push([performance.now(), (u.user + u.system) / 1000, u.system / 1000]);
      if (done === 1) threads = [threadCpuMs(), new Map()];
      if (done === iters) threads[1] = threadCpuMs();
    },
    warn: (m) => console.error(m),
    signal: new AbortController().signal,
  })) as { ms_per_iter: number; ort_share: number };
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  await rt.close();

  console.log(`\n${values.model} layer ${layerIdx}: ${n}×${c.seq_len} windows, batch 8, ${iters} iters, ${rt.threads} threads`);
  console.log(`step wall ${(wall / 1000).toFixed(2)} s, CPU ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s, inside onnxruntime ${((rt.busyMs - busy0) / 1000).toFixed(2)} s`);
  // per iteration from the step's progress calls (the first iteration also creates the session)
  const steps = ticks.slice(1).map(([w, c], i) => [w - ticks[i]![0], c - ticks[i]![1]] as const);
  const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] ?? Number.NaN;
  console.log(`training loop: ${res.ms_per_iter.toFixed(1)} ms / iteration, ${(100 * res.ort_share).toFixed(1)}% inside onnxruntime`);
  console.log(`iterations after the first: median wall ${med(steps.map((s) => s[0])).toFixed(1)} ms, CPU ${med(steps.map((s) => s[1])).toFixed(1)} ms; load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  const later = Math.max(1, ticks.length - 1);
  console.log(`system time: ${((ticks.at(-1)![2] - ticks[0]![2]) / later).toFixed(1)} ms per iteration after the first`);
  const busy = [...threads[1]].map(([tid, ms]) => [tid, (ms - (threads[0].get(tid) ?? 0)) / later] as const).filter(([, ms]) => ms >= 1);
  console.log(`CPU ms per iteration by thread (main ${process.pid}): ${busy.sort((a, b) => b[1] - a[1]).map(([tid, ms]) => `${tid === String(process.pid) ? 'main' : tid} ${ms.toFixed(0)}`).join(', ')}\n`);
  if (profiled) console.log('| session | runs | ms per run | share of its run time in nodes |\n|---|---:|---:|---:|');
  const files = !profiled ? [] : readdirSync(profileDir).filter((f) => f.endsWith('.json')).sort();
  let block: ReturnType<typeof summarize> | undefined;
  for (const f of files) {
    const s = summarize(join(profileDir, f));
    const nodeUs = [...s.byOp.values()].reduce((a, b) => a + b, 0);
    console.log(`| ${f.replace(/_\d{4}-.*$/, '').slice(0, 70)} | ${s.runs} | ${(s.runUs / 1000 / Math.max(1, s.runs)).toFixed(1)} | ${s.runUs > 0 ? ((100 * nodeUs) / s.runUs).toFixed(0) : '—'}% |`);
    if (f.includes('autoround.block')) block = s;
  }
  if (block) {
    const total = [...block.byOp.values()].reduce((a, b) => a + b, 0);
    console.log(`\nautoround.block per op type (${block.runs} runs, ${(total / 1000 / block.runs).toFixed(1)} ms of nodes per run):\n`);
    console.log('| op | ms per run | share |');
    console.log('|---|---:|---:|');
    for (const [op, us] of [...block.byOp].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      console.log(`| ${op} | ${(us / 1000 / block.runs).toFixed(2)} | ${((100 * us) / total).toFixed(1)}% |`);
    }
    // nodes on calibration activations (leading dim = windows or tokens) against the weight-sized quantizer nodes
    const acts = [...block.byNode.values()].filter(([, , sh]) => /^\[(8|2048)×/.test(sh)).reduce((a, [, us]) => a + us, 0);
    console.log(`\nnodes on activations: ${(acts / 1000 / block.runs).toFixed(1)} ms per run (${((100 * acts) / total).toFixed(1)}%); the rest (quantizer, weight-sized): ${((total - acts) / 1000 / block.runs).toFixed(1)} ms`);
    console.log(`\nheaviest nodes:\n`);
    for (const [node, [op, us, shapes]] of [...block.byNode].sort((a, b) => b[1][1] - a[1][1]).slice(0, top)) {
      console.log(`| ${node} | ${op} | ${shapes} | ${(us / 1000 / block.runs).toFixed(2)} | ${((100 * us) / total).toFixed(1)}% |`);
    }
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
