// Each quantization method on the shared models, as `quantforge run` builds it (a recipe with no evaluation
// and no outputs, from an empty cache): wall time per step, per decoder layer and in total, the share spent
// inside onnxruntime (Kernel.busyMs), the process's CPU time (user + system, all threads: steadier than wall
// time on a shared machine), its peak RSS, and the torch reference's quantize_seconds.
// Every (model, method, code tree) runs as its own child process, interleaved run by run, so `--base DIR` (a
// second checkout, e.g. a worktree of the commit before a change) is measured beside this tree in one sitting.
//
//   npx tsx bench/methods.ts [--models stories260K,babyllama-char105,wiki-llama-8m]
//        [--methods rtn,gptq,awq,smoothquant,autoround] [--runs 3] [--base DIR] [--autoround-iters N]
//
// Calibration per the reference (../shared/reference/perplexity.json): its dataset, samples and seq_len per
// model. AutoRound runs the reference's iteration count for the model unless --autoround-iters says otherwise.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { StepImpl } from '../src/steps/types.js';
import { median, table } from './util.js';

const HERE = resolve(import.meta.dirname, '..');
const SHARED = resolve(HERE, '../shared');

interface Reference {
  model: string;
  calibration: { dataset: string; samples: number; seq_len: number };
  quantize_seconds: Record<string, number>;
  autoround_iters: number;
}

const METHODS: Record<string, { ref: string; stages: (iters: number) => string }> = {
  rtn: { ref: 'rtn-w4a16', stages: () => '  - { kind: rtn, scheme: W4A16, ignore: [lm_head] }' },
  gptq: { ref: 'gptq-w4a16', stages: () => '  - { kind: gptq, scheme: W4A16, ignore: [lm_head] }' },
  awq: { ref: 'awq-w4a16-asym', stages: () => '  - { kind: awq, scheme: W4A16_ASYM, duo_scaling: both, ignore: [lm_head] }' },
  smoothquant: { ref: 'sq-w8a8', stages: () => '  - { kind: smoothquant, smoothing_strength: 0.8 }\n  - { kind: rtn, scheme: W8A8, ignore: [lm_head] }' },
  autoround: { ref: 'autoround-w4a16', stages: (iters) => `  - { kind: autoround, scheme: W4A16, iters: ${iters}, ignore: [lm_head] }` },
};

interface StepTime { id: string; kind: string; ms: number; ortMs: number }
interface ChildResult { totalMs: number; cpuMs: number; steps: StepTime[]; maxRssMb: number }

/** one build in this process (the child): the tree at `root`, steps run in-process so Kernel.busyMs is visible */
async function child(root: string, recipe: string, cacheDir: string): Promise<ChildResult> {
  const load = async <T>(p: string): Promise<T> => (await import(pathToFileURL(join(root, 'src', p)).href)) as T;
  const { prepare } = await load<typeof import('../src/exec/prepare.js')>('exec/prepare.ts');
  const { build } = await load<typeof import('../src/exec/run.js')>('exec/run.ts');
  const { InProcessRunner } = await load<typeof import('../src/exec/runner.js')>('exec/runner.ts');
  // the step table: declarations that load their implementation (stepDefs), or the implementations (older trees'
  // stepImpls); every implementation is loaded before the clock starts, as older trees load them with the module
  const stepTable = await load<{ stepDefs?: typeof import('../src/exec/step-impls.js').stepDefs; stepImpls?: ReadonlyMap<string, StepImpl> }>('exec/step-impls.ts');
  const stepDefs = stepTable.stepDefs ?? stepTable.stepImpls!;
  await Promise.all([...stepDefs.values()].map((d) => ('load' in d ? d.load() : d)));
  // the step store: DirStore (cache/dir-store.ts) in trees that have it, LocalCache in older ones
  const { DirStore } = await load<typeof import('../src/cache/dir-store.js')>('cache/dir-store.ts').catch(() => ({ DirStore: undefined }));
  const { LocalCache } = (await load<Record<string, unknown>>('cache/store.ts')) as { LocalCache?: typeof import('../src/cache/dir-store.js').DirStore };
  const Store = DirStore ?? LocalCache;
  if (!Store) throw new Error(`${root}: no DirStore or LocalCache`);
  const { Runtime, Kernel } = await load<typeof import('../src/ort/session.js')>('ort/session.ts');
  const rt = new Runtime({ device: 'cpu' });
  const inner = new InProcessRunner(stepDefs, () => rt);
  const steps: StepTime[] = [];
  const runner: typeof inner = Object.assign(Object.create(inner) as typeof inner, {
    async run(req: Parameters<typeof inner.run>[0], cb: Parameters<typeof inner.run>[1], signal: AbortSignal) {
      const [t0, b0] = [performance.now(), Kernel.busyMs];
      const r = await inner.run(req, cb, signal);
      steps.push({ id: req.id, kind: req.kind, ms: performance.now() - t0, ortMs: Kernel.busyMs - b0 });
      return r;
    },
  });
  const [t0, cpu0] = [performance.now(), process.cpuUsage()];
  const prepared = await prepare(recipe, [], cacheDir, 'cpu');
  if (!prepared.ok) throw new Error(`recipe invalid: ${JSON.stringify(prepared.diagnostics)}`);
  const out = await build(prepared.value, new Store(cacheDir), runner, (e) => {
    if (e.event === 'step-failed') console.error(`${e.id}: ${e.message}`);
  }, new AbortController().signal);
  if (!out.exec.ok) throw new Error('build failed');
  const totalMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  await rt.close();
  return { totalMs, cpuMs: (cpu.user + cpu.system) / 1000, steps, maxRssMb: process.resourceUsage().maxRSS / 1024 };
}

function runChild(root: string, model: string, method: string, iters: number): ChildResult {
  const ref = (JSON.parse(readFileSync(join(SHARED, 'reference/perplexity.json'), 'utf8')) as Record<string, Reference>)[model]!;
  const dir = mkdtempSync(join(tmpdir(), `qf-bench-methods-${model}-${method}-`));
  try {
    const c = ref.calibration;
    const recipe = join(dir, 'recipe.yaml');
    writeFileSync(recipe, `quantforge: 1
model: ${join(SHARED, 'models', model)}
calibration: { dataset: ${join(SHARED, 'data', c.dataset.split('/').pop()!)}, samples: ${c.samples}, seq_len: ${c.seq_len} }
stages:
${METHODS[method]!.stages(iters)}
`);
    const out = execFileSync(process.execPath, ['--import', 'tsx', join(HERE, 'bench/methods.ts'), '--child', JSON.stringify({ root, recipe, cacheDir: join(dir, 'cache') })], {
      cwd: HERE,
      encoding: 'utf8',
      maxBuffer: 64 * 2 ** 20,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    return JSON.parse(out.trim().split('\n').pop()!) as ChildResult;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const layerOf = (id: string): number | undefined => {
  const m = /(?:layer|capture|propagate)\.(\d+)$/.exec(id) ?? /\.(\d+)$/.exec(id);
  return m ? Number(m[1]) : undefined;
};

function summarize(runs: ChildResult[]): { total: number; cpu: number; prep: number; perLayer: number; layers: number; ort: number; rss: number } {
  const per = runs.map((r) => {
    const layers = new Map<number, number>();
    let prep = 0;
    for (const s of r.steps) {
      const l = layerOf(s.id);
      if (l === undefined) prep += s.ms;
      else layers.set(l, (layers.get(l) ?? 0) + s.ms);
    }
    const ms = r.steps.reduce((a, s) => a + s.ms, 0);
    const ort = r.steps.reduce((a, s) => a + s.ortMs, 0);
    return { total: r.totalMs, cpu: r.cpuMs, prep, perLayer: median([...layers.values()]), layers: layers.size, ort: ms > 0 ? ort / ms : 0, rss: r.maxRssMb };
  });
  const pick = (k: keyof (typeof per)[number]): number => median(per.map((p) => p[k]));
  return { total: pick('total'), cpu: pick('cpu'), prep: pick('prep'), perLayer: pick('perLayer'), layers: pick('layers'), ort: pick('ort'), rss: pick('rss') };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      child: { type: 'string' },
      models: { type: 'string', default: 'stories260K,babyllama-char105,wiki-llama-8m' },
      methods: { type: 'string', default: Object.keys(METHODS).join(',') },
      runs: { type: 'string', default: '3' },
      base: { type: 'string' },
      'autoround-iters': { type: 'string' },
    },
  });
  if (values.child) {
    const { root, recipe, cacheDir } = JSON.parse(values.child) as { root: string; recipe: string; cacheDir: string };
    console.log(JSON.stringify(await child(root, recipe, cacheDir)));
    return;
  }
  const refs = JSON.parse(readFileSync(join(SHARED, 'reference/perplexity.json'), 'utf8')) as Record<string, Reference>;
  const roots: [string, string][] = [['this tree', HERE], ...(values.base ? [['base', resolve(values.base)] as [string, string]] : [])];
  const runs = Number(values.runs);
  const load0 = loadavg()[0]!;
  const rows: string[][] = [];
  const kinds: string[] = [];
  const byKind = (runs: ChildResult[]): string => {
    const per = new Map<string, number[]>();
    for (const r of runs) {
      const sums = new Map<string, [number, number]>();
      for (const st of r.steps) {
        const [ms, ort] = sums.get(st.kind) ?? [0, 0];
        sums.set(st.kind, [ms + st.ms, ort + st.ortMs]);
      }
      for (const [k, [ms, ort]] of sums) per.set(k, [...(per.get(k) ?? []), ms, ort]);
    }
    return [...per].map(([k, xs]) => {
      const ms = median(xs.filter((_, i) => i % 2 === 0));
      const ort = median(xs.filter((_, i) => i % 2 === 1));
      return `${k} ${(ms / 1000).toFixed(2)} s (${ms > 0 ? ((100 * ort) / ms).toFixed(0) : 0}% ort)`;
    }).join(', ');
  };
  for (const model of values.models.split(',')) {
    for (const method of values.methods.split(',')) {
      const ref = refs[model]!;
      const iters = method === 'autoround' ? Number(values['autoround-iters'] ?? ref.autoround_iters) : 0;
      const results = new Map<string, ChildResult[]>(roots.map(([n]) => [n, []]));
      for (let r = 0; r < runs; r++) {
        for (const [name, root] of roots) {
          process.stderr.write(`${model} ${method} ${name} run ${r + 1}/${runs}\n`);
          results.get(name)!.push(runChild(root, model, method, iters));
        }
      }
      const mine = summarize(results.get('this tree')!);
      for (const [name] of roots) kinds.push(`${model} ${method} (${name}): ${byKind(results.get(name)!)}`);
      const base = values.base ? summarize(results.get('base')!) : undefined;
      const refS = ref.quantize_seconds[METHODS[method]!.ref];
      const label = method === 'autoround' ? `autoround (${iters} iters)` : method === 'smoothquant' ? 'smoothquant 0.8 + rtn W8A8' : method;
      const row = [
        model,
        label,
        refS === undefined ? '—' : refS.toFixed(2),
        ...(base ? [(base.total / 1000).toFixed(2)] : []),
        (mine.total / 1000).toFixed(2),
        ...(base ? [`${(base.total / mine.total).toFixed(2)}×`] : []),
        ...(base ? [(base.cpu / 1000).toFixed(2)] : []),
        (mine.cpu / 1000).toFixed(2),
        ...(base ? [`**${(base.cpu / mine.cpu).toFixed(2)}×**`] : []),
        refS ? `${(mine.total / 1000 / refS).toFixed(2)}` : '—',
        `${(mine.prep / 1000).toFixed(2)}`,
        `${(mine.perLayer / 1000).toFixed(2)} × ${mine.layers}`,
        `${(100 * mine.ort).toFixed(0)}%`,
        `${mine.rss.toFixed(0)}${base ? ` (${base.rss.toFixed(0)})` : ''}`,
      ];
      rows.push(row);
      // each row as soon as it is measured (a long sweep can be stopped without losing what it found)
      process.stderr.write(`row: | ${row.join(' | ')} |\n${kinds.slice(-roots.length).map((k) => `kinds: ${k}`).join('\n')}\n`);
    }
  }
  const head = ['model', 'method', 'torch ref s', ...(values.base ? ['base s'] : []), 'this tree s', ...(values.base ? ['wall speedup'] : []), ...(values.base ? ['base CPU s'] : []), 'this tree CPU s', ...(values.base ? ['CPU speedup'] : []), 'vs ref (wall)', 'tokenize+embed s', 'per layer s × layers', 'in onnxruntime', `peak RSS MB${values.base ? ' (base)' : ''}`];
  console.log(table(head, rows));
  console.log(`\nmedian of ${runs} runs per tree, interleaved; load average ${load0.toFixed(2)} at start, ${loadavg()[0]!.toFixed(2)} at end\n`);
  console.log('Time per step kind, summed over layers (median over runs):\n');
  for (const k of kinds) console.log(`- ${k}`);
}

await main();
