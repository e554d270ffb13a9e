// Runs a recipe through the real planner, executor and step implementations (in-process), with one cache
// per test run shared by every e2e file (QUANTFORGE_TEST_CACHE, made by the global setup).

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DirStore } from '../../src/cache/dir-store.js';
import type { RunEvent } from '../../src/exec/events.js';
import { prepare } from '../../src/exec/prepare.js';
import { build } from '../../src/exec/run.js';
import { InProcessRunner, type StepRunner } from '../../src/exec/runner.js';
import { Runtime } from '../../src/ort/session.js';
import { stepDefs } from '../../src/exec/step-impls.js';

export type Summary = Extract<RunEvent, { event: 'summary' }>;

export function testCache(): string {
  return process.env['QUANTFORGE_TEST_CACHE'] ?? mkdtempSync(join(tmpdir(), 'qf-e2e-cache-'));
}

let runtime: Runtime | undefined;

export interface RecipeRun {
  summary: Summary;
  events: RunEvent[];
  /** step results (metrics) by step id */
  results: Map<string, Record<string, unknown>>;
  /** cache entry directory of each step, by step id */
  artifacts: Map<string, string>;
}

/** `runner`: the in-process runner unless given (the CLI's WorkerRunner, for runs as `quantforge run` makes them) */
export async function runRecipe(recipe: string, sets: string[] = [], cache = testCache(), runner?: StepRunner): Promise<RecipeRun> {
  const prepared = await prepare(recipe, sets, cache, 'cpu');
  if (!prepared.ok) throw new Error(prepared.diagnostics.map((d) => d.message).join('\n'));
  const events: RunEvent[] = [];
  runner ??= new InProcessRunner(stepDefs, () => (runtime ??= new Runtime({ device: 'cpu' })));
  const outcome = await build(prepared.value, new DirStore(cache), runner, (e) => events.push(e), new AbortController().signal);
  const summary = events.find((e): e is Summary => e.event === 'summary')!;
  const failed = events.find((e) => e.event === 'step-failed');
  if (failed) throw new Error(`step failed: ${JSON.stringify(failed)}`);
  const results = new Map<string, Record<string, unknown>>();
  for (const e of events) if (e.event === 'step-done') results.set(e.id, (e.metrics ?? {}) as Record<string, unknown>);
  const artifacts = new Map<string, string>();
  for (const v of prepared.value.variants) for (const [id, key] of v.keys) artifacts.set(id, outcome.exec.entries.get(key)!.dir);
  return { summary, events, results, artifacts };
}

export function perplexities(run: RecipeRun): { fp: number; quantized: number; onnx?: number; gguf?: number; kl?: number } {
  const m = run.summary.metrics as { perplexity: { fp: number; quantized: number; onnx?: number; gguf?: number }; kl?: number };
  return { ...m.perplexity, ...(m.kl !== undefined ? { kl: m.kl } : {}) };
}
