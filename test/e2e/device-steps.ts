// A recipe run on one execution provider, and its quantizing steps compared with another provider's. Two
// comparisons: end to end (each provider's own chain: a layer's calibration inputs are its own earlier layers'
// outputs) and per step (a layer step of the CPU run run again on the other provider from the CPU run's cached
// inputs, so only that step's own arithmetic differs). Codes are read from each step's layer state.

import { existsSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { DirStore } from '../../src/cache/dir-store.js';
import type { Json } from '../../src/cache/key.js';
import type { RunEvent } from '../../src/exec/events.js';
import { prepare } from '../../src/exec/prepare.js';
import { build } from '../../src/exec/run.js';
import { InProcessRunner, stepImpl, type StepCallbacks, type StepRequest, type StepRunner } from '../../src/exec/runner.js';
import { stepDefs } from '../../src/exec/step-impls.js';
import { SafetensorsFile } from '../../src/formats/safetensors.js';
import { Runtime, type Provider } from '../../src/ort/session.js';
import { LAYER_FILE } from '../../src/steps/layer-state.js';

export interface DeviceRun {
  /** the summary's metrics (perplexities) */
  metrics: { perplexity: { fp: number; quantized: number; onnx?: number }; kl?: number };
  /** cache entry directory of each step, by step id */
  artifacts: Map<string, string>;
  /** the request of every step this run ran, by step id (inputs are cache entry directories) */
  requests: Map<string, StepRequest>;
}

/** remembers each request it runs */
class RecordingRunner implements StepRunner {
  readonly requests = new Map<string, StepRequest>();
  constructor(readonly inner: StepRunner) {}
  run(req: StepRequest, cb: StepCallbacks, signal: AbortSignal): Promise<Json> {
    this.requests.set(req.id, structuredClone(req));
    return this.inner.run(req, cb, signal);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** runs the recipe at `path` through the real planner, executor and steps on `rt` (provider-independent steps on `cpu`) */
export async function runOn(rt: Runtime, cpu: Runtime, path: string, cache: string): Promise<DeviceRun> {
  const provider = rt.device as Provider;
  const prepared = await prepare(path, [], cache, provider);
  if (!prepared.ok) throw new Error(prepared.diagnostics.map((d) => d.message).join('\n'));
  const events: RunEvent[] = [];
  const runner = new RecordingRunner(new InProcessRunner(stepDefs, () => rt, () => cpu));
  const outcome = await build(prepared.value, new DirStore(cache), runner, (e) => events.push(e), new AbortController().signal);
  const failed = events.find((e) => e.event === 'step-failed');
  if (failed) throw new Error(`step failed on ${provider}: ${JSON.stringify(failed)}`);
  const summary = events.find((e) => e.event === 'summary') as Extract<RunEvent, { event: 'summary' }>;
  const artifacts = new Map<string, string>();
  for (const v of prepared.value.variants) for (const [id, key] of v.keys) artifacts.set(id, outcome.exec.entries.get(key)!.dir);
  return { metrics: summary.metrics as DeviceRun['metrics'], artifacts, requests: runner.requests };
}

/** runs one recorded step again on `rt`, from the same inputs, into a fresh directory under `dir` */
export async function rerunStep(req: StepRequest, rt: Runtime, dir: string): Promise<{ dir: string; result: Json }> {
  const impl = await stepImpl(stepDefs, req.kind);
  const outDir = mkdtempSync(join(dir, 'step-'));
  const result = await impl.run({ ...req, outDir, runtime: rt, progress: () => {}, warn: () => {}, signal: new AbortController().signal });
  return { dir: outDir, result };
}

/** whether two runs' requests of a step read the same input entries (then their outputs compare the step alone) */
export function sameInputs(a: StepRequest, b: StepRequest): boolean {
  const dirs = (r: StepRequest): string => JSON.stringify(Object.entries(r.inputs).map(([k, v]) => [k, (Array.isArray(v) ? v : [v]).map((i) => i.dir)]));
  return dirs(a) === dirs(b);
}

/** every `*.weight_codes` tensor of a step's layer state (int8 element codes), by name */
export async function readCodes(dir: string): Promise<Map<string, Int8Array>> {
  const out = new Map<string, Int8Array>();
  const file = join(dir, LAYER_FILE);
  if (!existsSync(file)) return out;
  const f = await SafetensorsFile.open(file);
  try {
    for (const name of f.tensors.keys()) if (name.endsWith('.weight_codes')) out.set(name, (await f.read(name)).data as Int8Array);
  } finally {
    await f.close();
  }
  return out;
}

export interface CodeDiff {
  codes: number;
  differing: number;
  maxDelta: number;
  /** differing codes per module name */
  byModule: Record<string, number>;
}

export const emptyDiff = (): CodeDiff => ({ codes: 0, differing: 0, maxDelta: 0, byModule: {} });

/** adds the differences between two steps' codes to `into` */
export async function diffCodes(a: string, b: string, into: CodeDiff = emptyDiff()): Promise<CodeDiff> {
  const [ca, cb] = [await readCodes(a), await readCodes(b)];
  if ([...ca.keys()].join() !== [...cb.keys()].join()) throw new Error(`${a} and ${b} quantize different modules`);
  for (const [name, x] of ca) {
    const y = cb.get(name)!;
    into.codes += x.length;
    let n = 0;
    for (let i = 0; i < x.length; i++) {
      const d = Math.abs((x[i] as number) - (y[i] as number));
      if (d === 0) continue;
      n++;
      into.maxDelta = Math.max(into.maxDelta, d);
    }
    into.differing += n;
    if (n) into.byModule[name] = (into.byModule[name] ?? 0) + n;
  }
  return into;
}

/** the step ids of a run whose layer state holds codes (the quantizing layer steps), in plan order */
export async function quantizingSteps(run: DeviceRun): Promise<string[]> {
  const ids: string[] = [];
  for (const [id, dir] of run.artifacts) if ((await readCodes(dir)).size > 0) ids.push(id);
  return ids;
}

export const share = (d: CodeDiff): string => `${d.differing}/${d.codes} (${((100 * d.differing) / Math.max(1, d.codes)).toFixed(3)}%), max |Δ| ${d.maxDelta}`;
