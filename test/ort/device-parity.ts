// Which graphs run on another execution provider, and how close they come to the CPU provider. A recording
// Runtime runs real code paths (recipes through the real planner, executor and steps; greedy generation) on
// the CPU and keeps, for every kernel, its graph bytes and its first call's feeds and outputs; `replay` then
// runs each recorded graph on another provider with the same feeds, compares outputs and reads where every
// node ran from onnxruntime's profile. Kernel keys, not file names, identify graphs, so the harness follows
// kernels wherever their source files move.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DirStore } from '../../src/cache/dir-store.js';
import type { RunEvent } from '../../src/exec/events.js';
import { prepare } from '../../src/exec/prepare.js';
import { build } from '../../src/exec/run.js';
import { InProcessRunner } from '../../src/exec/runner.js';
import type { Graph } from '../../src/ort/graph.js';
import { describePlacements } from '../../src/ort/placement.js';
import { Kernel, Runtime, type Feeds, type Fetches, type KernelOptions, type NodePlacement, type Provider } from '../../src/ort/session.js';
import { stepDefs } from '../../src/exec/step-impls.js';
import type { Tensor } from '../../src/tensor.js';

export interface Recorded {
  key: string;
  /** graph bytes, or the path of an ONNX file (Runtime.load) */
  model: Uint8Array | string;
  /** the graph as its builder makes it for another provider (builders that read the Runtime's device differ) */
  rebuild?: (provider: Provider) => Uint8Array;
  feeds: Record<string, Tensor>;
  outputs: readonly string[] | undefined;
  /** the kernel's options (host-pinned kernels replay pinned) */
  options: KernelOptions;
  fetches: Fetches;
  cpuMs: number;
}

const copy = (t: Tensor): Tensor => ({ dtype: t.dtype, dims: [...t.dims], data: t.data.slice() as Tensor['data'] });

/** a CPU Runtime that records the first call of every kernel */
export class RecordingRuntime extends Runtime {
  readonly records = new Map<string, Recorded>();

  constructor(threads?: number) {
    super({ device: 'cpu', ...(threads ? { threads } : {}) });
  }

  /** `build` as it runs on a Runtime of `provider`: the builder reads this Runtime's device, set for the call */
  #rebuilder(build: () => Graph | Uint8Array): (provider: Provider) => Uint8Array {
    return (provider) => {
      const self = this as unknown as { device: Provider };
      const was = self.device;
      self.device = provider;
      try {
        const g = build();
        return g instanceof Uint8Array ? g : g.build();
      } finally {
        self.device = was;
      }
    };
  }

  #wrap(key: string, model: () => Uint8Array | string, k: Kernel, options: KernelOptions = {}, rebuild?: (provider: Provider) => Uint8Array): Kernel {
    const run = k.run.bind(k);
    k.run = async (feeds: Feeds, outputs?: readonly string[]): Promise<Fetches> => {
      const t0 = performance.now();
      const out = await run(feeds, outputs);
      if (!this.records.has(key)) {
        const fed: Record<string, Tensor> = {};
        for (const [n, t] of Object.entries(feeds)) fed[n] = copy(t as Tensor);
        const fetched: Fetches = {};
        for (const [n, t] of Object.entries(out)) fetched[n] = copy(t as Tensor);
        this.records.set(key, { key, model: model(), ...(rebuild ? { rebuild } : {}), feeds: fed, outputs, options, fetches: fetched, cpuMs: performance.now() - t0 });
      }
      return out;
    };
    return k;
  }

  override async kernel(key: string, buildGraph: () => Graph | Uint8Array, options: KernelOptions = {}): Promise<Kernel> {
    let bytes: Uint8Array | undefined;
    const k = await super.kernel(key, () => {
      const g = buildGraph();
      bytes = g instanceof Uint8Array ? g : g.build();
      return bytes;
    }, options);
    // a memo hit builds nothing: the first call already wrapped this kernel
    return bytes ? this.#wrap(key, () => bytes!, k, options, this.#rebuilder(buildGraph)) : k;
  }

  override async load(path: string): Promise<Kernel> {
    return this.#wrap(`load:${path.split('/').slice(-3).join('/')}`, () => path, await super.load(path));
  }
}

/** runs a recipe (YAML text, written into `dir`) through the real executor on `rt`, with the step cache `cache` */
export async function runRecipeText(rt: Runtime, yaml: string, dir: string, cache: string, provider: Provider = 'cpu'): Promise<RunEvent[]> {
  const path = join(mkdtempSync(join(dir, 'recipe-')), 'recipe.yaml');
  writeFileSync(path, yaml);
  const prepared = await prepare(path, [], cache, provider);
  if (!prepared.ok) throw new Error(prepared.diagnostics.map((d) => d.message).join('\n'));
  const events: RunEvent[] = [];
  let cpu: Runtime | undefined;
  const runner = new InProcessRunner(stepDefs, () => rt, () => (rt.device === 'cpu' ? rt : (cpu ??= new Runtime({ device: 'cpu' }))));
  await build(prepared.value, new DirStore(cache), runner, (e) => events.push(e), new AbortController().signal);
  await cpu?.close();
  const failed = events.find((e) => e.event === 'step-failed');
  if (failed) throw new Error(`step failed: ${JSON.stringify(failed)}`);
  return events;
}

export interface Comparison {
  key: string;
  /** the provider the kernel's session was created for ('cpu' for host-pinned kernels) */
  provider: Provider;
  /** largest |other − cpu| over every float output */
  maxAbs: number;
  /** maxAbs relative to the largest |cpu| value of that output */
  maxRel: number;
  /** integer outputs: elements that differ */
  intMismatches: number;
  /** NaN/Inf where the CPU has finite values */
  nonFinite: number;
  placements: NodePlacement[];
  ms: number;
  error?: string;
}

function compareTensors(a: Tensor, b: Tensor): { abs: number; rel: number; int: number; bad: number } {
  if (a.dims.join() !== b.dims.join()) throw new Error(`shape [${b.dims}] differs from the CPU's [${a.dims}]`);
  let abs = 0;
  let scale = 0;
  let int = 0;
  let bad = 0;
  const float = a.dtype === 'float32' || a.dtype === 'float64' || a.dtype === 'float16';
  for (let i = 0; i < a.data.length; i++) {
    const x = Number(a.data[i]);
    const y = Number(b.data[i]);
    if (!float) {
      if (x !== y) int++;
      continue;
    }
    if (Number.isFinite(x) && !Number.isFinite(y)) bad++;
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    abs = Math.max(abs, Math.abs(x - y));
    scale = Math.max(scale, Math.abs(x));
  }
  return { abs, rel: scale > 0 ? abs / scale : abs, int, bad };
}

/** every recorded kernel, as its builder makes it for `provider`, run there (profiled) and compared with the CPU's outputs */
export async function replay(records: Iterable<Recorded>, provider: Provider, onResult?: (c: Comparison) => void): Promise<Comparison[]> {
  const rt = new Runtime({ device: provider, profileDir: mkdtempSync(join(tmpdir(), `qf-profile-${provider}-`)) });
  const results: Comparison[] = [];
  try {
    for (const r of records) {
      const c: Comparison = { key: r.key, provider, maxAbs: 0, maxRel: 0, intMismatches: 0, nonFinite: 0, placements: [], ms: 0 };
      try {
        const k = typeof r.model === 'string' ? await rt.load(r.model) : await rt.kernel(r.key, () => r.rebuild?.(provider) ?? (r.model as Uint8Array), r.options);
        c.provider = k.provider;
        const t0 = performance.now();
        const out = await k.run(r.feeds, r.outputs);
        c.ms = performance.now() - t0;
        for (const [name, cpu] of Object.entries(r.fetches)) {
          const other = out[name];
          if (!other) throw new Error(`no output ${name}`);
          const d = compareTensors(cpu, other);
          c.maxAbs = Math.max(c.maxAbs, d.abs);
          c.maxRel = Math.max(c.maxRel, d.rel);
          c.intMismatches += d.int;
          c.nonFinite += d.bad;
        }
        c.placements = k.placements();
        if (typeof r.model === 'string') await k.release();
      } catch (e) {
        c.error = (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
      }
      results.push(c);
      onResult?.(c);
    }
  } finally {
    await rt.close();
  }
  return results;
}

/** the kernel family: its key up to the first ':' (shapes and options follow it) */
export const family = (key: string): string => key.split(':')[0]!;

/** one markdown row per kernel family: worst differences, and the ops that left the provider */
export function parityTable(results: readonly Comparison[], provider: Provider): string {
  const rows = new Map<string, Comparison[]>();
  for (const c of results) rows.set(family(c.key), [...(rows.get(family(c.key)) ?? []), c]);
  const lines = [`| kernel | runs on ${provider} | max abs diff | max rel diff | int mismatches | nodes on cpu |`, '|---|---|---|---|---|---|'];
  for (const [name, cs] of rows) {
    const err = cs.find((c) => c.error);
    const cpuNodes = [...new Set(cs.map((c) => describePlacements(c.placements, 'cpu')).filter(Boolean))].join('; ');
    const onProvider = cs.some((c) => c.placements.some((p) => p.provider === provider));
    const pinned = cs.every((c) => c.provider === 'cpu');
    const status = err ? `fails: ${err.error}` : pinned ? 'pinned to cpu (host kernel)' : !onProvider ? 'falls back (all nodes on cpu)' : cpuNodes ? 'partly (some nodes on cpu)' : 'yes';
    const max = (f: (c: Comparison) => number): number => Math.max(...cs.map(f));
    lines.push(`| ${name} | ${status} | ${max((c) => c.maxAbs).toExponential(1)} | ${max((c) => c.maxRel).toExponential(1)} | ${max((c) => c.intMismatches)} | ${cpuNodes || '—'} |`);
  }
  return lines.join('\n');
}
