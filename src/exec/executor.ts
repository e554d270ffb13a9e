// The executor walks jobs in topological order down the ladder fresh → cache hit → run → store (wireit's
// standard executor). Cache hits are cheap checks (meta.json and file sizes); an entry is fully verified
// (sha256 of every file) only when a running step is about to read it or an output is written from it, and
// a corrupt entry is evicted and rebuilt. It only emits events; reporters render them.

import type { Digest, Json } from '../cache/key.js';
import { withStepLock } from '../cache/lock.js';
import type { CacheEntry, LocalCache } from '../cache/store.js';
import type { RunEvent } from './events.js';
import { inputKeys, type Job } from './jobs.js';
import { InterruptedError, type StepRunner } from './runner.js';
import type { StepInputDir } from '../steps/types.js';
import { formatLocation } from '../diag/print.js';

export interface ExecOptions {
  cache: LocalCache;
  runner: StepRunner;
  emit: (e: RunEvent) => void;
  signal: AbortSignal;
  /** entries already looked up (by the plan display), so the walk does not look them up again */
  known?: ReadonlyMap<Digest, CacheEntry>;
}

export interface ExecResult {
  ok: boolean;
  interrupted: boolean;
  /** entries of every job, for outputs and metrics */
  entries: Map<Digest, CacheEntry>;
  ran: number;
  cached: number;
  failed: number;
  perKind: Record<string, { ran: number; cached: number }>;
}

class StepFailure extends Error {}

export async function execute(jobs: readonly Job[], o: ExecOptions): Promise<ExecResult> {
  const byKey = new Map(jobs.map((j) => [j.key, j]));
  const entries = new Map<Digest, CacheEntry>();
  const verified = new Set<Digest>();
  const res: ExecResult = { ok: true, interrupted: false, entries, ran: 0, cached: 0, failed: 0, perKind: {} };
  const count = (job: Job, what: 'ran' | 'cached'): void => {
    const k = (res.perKind[job.node.kind] ??= { ran: 0, cached: 0 });
    k[what]++;
    res[what]++;
  };
  const doneOnce = new Set<Digest>();

  const emitDone = (job: Job, entry: CacheEntry, result: 'ran' | 'cached', ms: number): void => {
    if (doneOnce.has(job.key)) return;
    doneOnce.add(job.key);
    count(job, result);
    o.emit({ event: 'step-done', id: job.node.id, kind: job.node.kind, group: job.node.group, result, ms, metrics: entry.meta.result });
  };

  /** an input's entry, verified; a corrupt or missing one is rebuilt first */
  const usable = async (key: Digest): Promise<CacheEntry> => {
    let entry = entries.get(key) ?? (await o.cache.lookup(byKey.get(key)!.record.kind, key));
    if (entry && !verified.has(key)) {
      const check = await o.cache.verify(entry);
      if (!check.ok) {
        const job = byKey.get(key)!;
        o.emit({ event: 'log', level: 'warn', id: job.node.id, message: `cache entry of ${job.node.id} is corrupt (${check.problem}); rebuilding it` });
        await o.cache.evict(job.record.kind, key, check.problem);
        entries.delete(key);
        if (doneOnce.delete(key)) {
          res.cached--;
          res.perKind[job.node.kind]!.cached--;
        }
        entry = undefined;
      } else verified.add(key);
    }
    if (!entry) entry = await build(byKey.get(key)!);
    entries.set(key, entry);
    return entry;
  };

  const dirOf = async (key: Digest): Promise<StepInputDir> => {
    const e = await usable(key);
    const job = byKey.get(key)!;
    return { id: job.node.id, kind: job.node.kind, dir: e.dir, result: e.meta.result };
  };

  const build = async (job: Job): Promise<CacheEntry> => {
    for (const k of inputKeys(job)) await usable(k);
    const inputs: Record<string, StepInputDir | StepInputDir[]> = {};
    for (const [role, keys] of Object.entries(job.inputs)) {
      inputs[role] = Array.isArray(keys) ? await Promise.all(keys.map(dirOf)) : await dirOf(keys);
    }
    const modelDir = job.modelStep ? (await dirOf(job.modelStep)).dir : job.node.model?.kind === 'dir' ? job.node.model.dir : undefined;
    return withStepLock(o.cache.root, job.key, async () => {
      const raced = await o.cache.lookup(job.record.kind, job.key);
      if (raced) {
        emitDone(job, raced, 'cached', 0);
        return raced;
      }
      if (o.signal.aborted) throw new InterruptedError();
      o.emit({ event: 'step-start', id: job.node.id, kind: job.node.kind, group: job.node.group });
      const t0 = performance.now();
      const pending = await o.cache.begin(job.record.kind, job.key);
      let result: Json;
      try {
        result = await o.runner.run(
          { id: job.node.id, kind: job.node.kind, params: job.node.params, inputs, files: job.node.files, modelDir, outDir: pending.dir, deviceDependent: job.node.deviceDependent },
          {
            progress: (done, total, message) => o.emit({ event: 'step-progress', id: job.node.id, done, total, ...(message ? { message } : {}) }),
            warn: (message) => o.emit({ event: 'log', level: 'warn', id: job.node.id, message }),
          },
          o.signal,
        );
      } catch (e) {
        await pending.abort();
        if (e instanceof InterruptedError || o.signal.aborted) throw new InterruptedError();
        const message = e instanceof Error ? e.message : String(e);
        o.emit({
          event: 'step-failed',
          id: job.node.id,
          kind: job.node.kind,
          group: job.node.group,
          message,
          reason: (e as { reason?: string }).reason ?? 'unknown-error-thrown',
          ...(job.node.origin ? { location: formatLocation(job.node.origin) } : {}),
        });
        throw new StepFailure(message);
      }
      const ms = performance.now() - t0;
      const entry = await pending.commit({ record: job.record, stepId: job.node.id, result, elapsedMs: ms });
      verified.add(job.key);
      emitDone(job, entry, 'ran', ms);
      return entry;
    });
  };

  try {
    for (const job of jobs) {
      if (o.signal.aborted) throw new InterruptedError();
      const hit = entries.get(job.key) ?? o.known?.get(job.key) ?? (await o.cache.lookup(job.record.kind, job.key));
      if (hit) {
        entries.set(job.key, hit);
        emitDone(job, hit, 'cached', 0);
      } else entries.set(job.key, await build(job));
    }
  } catch (e) {
    res.ok = false;
    if (e instanceof InterruptedError) res.interrupted = true;
    else if (e instanceof StepFailure) res.failed++;
    else throw e;
  }
  return res;
}

/** the verified entry of an output step, ready to be applied to the user's directory */
export async function verifiedEntry(cache: LocalCache, job: Job, entry: CacheEntry): Promise<CacheEntry | string> {
  const check = await cache.verify(entry);
  return check.ok ? entry : check.problem;
}
