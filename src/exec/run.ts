// One build: plan event → execute → outputs applied → lock files → history → summary. Shared by `run` and
// `sweep`; the command decides how to render.

import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Digest, Json, KeyRecord } from '../cache/key.js';
import { explainChange } from '../cache/key.js';
import { writeFileAtomic } from '../cache/fs-atomic.js';
import type { CacheEntry, StepStore } from '../cache/step-store.js';
import type { PlannedStep, RunEvent } from './events.js';
import { execute, type ExecResult } from './executor.js';
import { historyFile, type Job } from './jobs.js';
import { onFullDisk, readJsonFile } from '../diag/file-errors.js';
import type { Prepared, Variant } from './prepare.js';
import type { RemoteRunner, StepRunner } from './runner.js';
import { applyOutputs, variantMetrics } from './outputs.js';

export type History = Record<string, KeyRecord>;

export function readHistory(cacheRoot: string, recipePath: string): History {
  const file = historyFile(cacheRoot, recipePath);
  try {
    return existsSync(file) ? (readJsonFile(file) as History) : {};
  } catch {
    // the history only explains why a step reruns: a damaged one explains nothing
    return {};
  }
}

async function writeHistory(cacheRoot: string, prepared: Prepared): Promise<void> {
  const history = readHistory(cacheRoot, prepared.recipe.path);
  const byKey = new Map(prepared.jobs.map((j) => [j.key, j.record]));
  for (const v of prepared.variants) for (const [id, key] of v.keys) history[`${v.label}|${id}`] = byKey.get(key)!;
  const file = historyFile(cacheRoot, prepared.recipe.path);
  try {
    await mkdir(dirname(file), { recursive: true });
    await writeFileAtomic(file, JSON.stringify(history));
  } catch (e) {
    throw onFullDisk(e, file);
  }
}

/** the cache entries that exist now, looked up concurrently (cheap checks: meta.json and file sizes) */
export async function lookupAll(prepared: Prepared, cache: StepStore): Promise<Map<Digest, CacheEntry>> {
  const found = await Promise.all(prepared.jobs.map(async (j) => [j.key, await cache.lookup(j.record.kind, j.key)] as const));
  return new Map(found.filter((f): f is readonly [Digest, CacheEntry] => f[1] !== undefined));
}

/** each job's state as `plan` shows it: fresh when its entry exists, otherwise why it must run */
export function planStates(prepared: Prepared, hits: ReadonlyMap<Digest, CacheEntry>, cacheRoot: string): PlannedStep[] {
  const history = readHistory(cacheRoot, prepared.recipe.path);
  return prepared.jobs.map((job) => {
    const v = prepared.variants[job.variant]!;
    const id = prepared.variants.length > 1 && !sharedByAll(prepared, job) ? `[${v.label}] ${job.node.id}` : job.node.id;
    const base = { id, kind: job.node.kind, group: job.node.group };
    return hits.has(job.key) ? { ...base, state: 'fresh' } : { ...base, state: 'run', reason: explainChange(history[`${v.label}|${job.node.id}`], job.record) };
  });
}

function sharedByAll(prepared: Prepared, job: Job): boolean {
  return prepared.variants.every((v) => [...v.keys.values()].includes(job.key));
}

export interface BuildOutcome {
  exec: ExecResult;
  metrics: Json;
  outputs: { format: string; path: string }[];
}

export async function build(prepared: Prepared, cache: StepStore, runner: StepRunner | RemoteRunner, emit: (e: RunEvent) => void, signal: AbortSignal): Promise<BuildOutcome> {
  const t0 = performance.now();
  // every entry the build may read or write is pinned: a concurrent `cache gc` leaves them alone
  const pins = prepared.jobs.map((j) => j.key);
  return cache.withRun(async () => {
    const hits = await lookupAll(prepared, cache);
    emit({ event: 'plan', steps: planStates(prepared, hits, cache.root) });
    const jobs = prepared.jobs.map((j) => (prepared.variants.length > 1 && !sharedByAll(prepared, j) ? { ...j, node: { ...j.node, id: `[${prepared.variants[j.variant]!.label}] ${j.node.id}` as typeof j.node.id } } : j));
    const exec = await execute(jobs, { cache, runner, emit, signal, known: hits });
    const outputs: BuildOutcome['outputs'] = [];
    if (exec.ok) {
      for (const v of prepared.variants) outputs.push(...(await applyOutputs(prepared, v, exec, cache, emit)));
      await writeHistory(cache.root, prepared);
    }
    const metrics = exec.ok ? collectMetrics(prepared, exec) : {};
    emit({ event: 'summary', ran: exec.ran, cached: exec.cached, failed: exec.failed, steps: exec.perKind, metrics, outputs, ms: performance.now() - t0 });
    return { exec, metrics, outputs };
  }, { pins });
}

function collectMetrics(prepared: Prepared, exec: ExecResult): Json {
  if (prepared.variants.length === 1) return variantMetrics(prepared.variants[0]!, exec);
  return { variants: prepared.variants.map((v: Variant) => ({ label: v.label, params: v.assignments as unknown as Json, ...(variantMetrics(v, exec) as Record<string, Json>) })) };
}
