// The executor walks jobs in topological order; each job climbs one ladder (wireit's execution/standard.ts):
// a known entry or a cache hit → else its dependencies → under the step's lock, an entry another run stored
// meanwhile → else run → store. Cache hits are cheap checks (meta.json and file sizes); an entry is fully
// verified (sha256 of every file) only when a running step is about to read it, and a corrupt entry is
// evicted and rebuilt. It only emits events; reporters render them.
// With a remote runner (the job queue) the walk is concurrent: every job starts as soon as its inputs are
// stored, and the run rung hands the step to another machine (`#dispatch`) instead of running it here; the
// inputs need only be in the shared store (the machine that runs the step verifies them).

import type { Digest, Json } from '../cache/key.js';
import { inspectShared, type CacheEntry, type StepStore } from '../cache/step-store.js';
import { ReasonedError, toFailure } from '../diag/failure.js';
import { onFullDisk } from '../diag/file-errors.js';
import { sourcePosition } from '../diag/position.js';
import type { StepInputDir } from '../steps/types.js';
import type { RunEvent, StepResult } from './events.js';
import { inputKeys, type Job } from './jobs.js';
import { InterruptedError, isRemote, type RemoteRunner, type RemoteStep, type StepCallbacks, type StepRef, type StepRequest, type StepRunner } from './runner.js';

export interface ExecOptions {
  cache: StepStore;
  /** a local runner runs one step at a time in plan order; a remote one gets every ready step at once */
  runner: StepRunner | RemoteRunner;
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

/** a step failed and said so with a step-failed event; the walk stops */
class StepFailure extends Error {}

/** a concurrent walk stopped submitting steps after another one failed */
class Halted extends Error {}

export function execute(jobs: readonly Job[], o: ExecOptions): Promise<ExecResult> {
  return new Execution(jobs, o).run();
}

class Execution {
  readonly #o: ExecOptions;
  readonly #order: readonly Job[];
  readonly #jobs: ReadonlyMap<Digest, Job>;
  /** every entry obtained so far: hits, verified inputs, stored results */
  readonly #entries = new Map<Digest, CacheEntry>();
  /** entries whose file digests this run has checked */
  readonly #verified = new Set<Digest>();
  /** how each reported job's entry was obtained (counts come from here); an evicted entry has none until rebuilt */
  readonly #outcomes = new Map<Digest, StepResult>();
  readonly #reported = new Set<Digest>();
  /** concurrent walk: each job's visit, started once; inputs found in the shared store; rebuilds of inputs it lost */
  readonly #visits = new Map<Digest, Promise<void>>();
  readonly #shared = new Set<Digest>();
  readonly #rebuilds = new Map<Digest, Promise<void>>();
  #halted = false;

  constructor(jobs: readonly Job[], o: ExecOptions) {
    this.#o = o;
    this.#order = jobs;
    this.#jobs = new Map(jobs.map((j) => [j.key, j]));
  }

  async run(): Promise<ExecResult> {
    try {
      if (isRemote(this.#o.runner)) await this.#walkConcurrently();
      else for (const job of this.#order) await this.#visit(job);
      return this.#result('ok');
    } catch (e) {
      if (e instanceof InterruptedError) return this.#result('interrupted');
      if (e instanceof StepFailure || e instanceof Halted) return this.#result('failed');
      throw e;
    }
  }

  /** every job at once, each waiting for its inputs; after a failure no step is submitted, and the walk ends when the steps in flight do */
  async #walkConcurrently(): Promise<void> {
    const settled = await Promise.allSettled(this.#order.map((job) => this.#visitOnce(job)));
    const errors = settled.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (errors.length === 0) return;
    throw errors.find((e) => e instanceof StepFailure) ?? errors.find((e) => e instanceof InterruptedError) ?? errors.find((e) => !(e instanceof Halted)) ?? errors[0];
  }

  #visitOnce(job: Job): Promise<void> {
    let visit = this.#visits.get(job.key);
    if (!visit) {
      visit = this.#visit(job);
      visit.catch(() => (this.#halted = true));
      this.#visits.set(job.key, visit);
    }
    return visit;
  }

  /** the ladder's top: an entry already known or in the cache, else build it */
  async #visit(job: Job): Promise<void> {
    this.#checkAbort();
    const hit = this.#entries.get(job.key) ?? this.#o.known?.get(job.key) ?? (await this.#o.cache.lookup(job.record.kind, job.key));
    if (hit) {
      this.#entries.set(job.key, hit);
      this.#report(job, hit, 'cached', 0);
    } else this.#entries.set(job.key, await this.#build(job));
  }

  /** dependencies first, then under the step's lock: an entry another run stored meanwhile, else run and store */
  async #build(job: Job): Promise<CacheEntry> {
    if (isRemote(this.#o.runner)) return this.#dispatch(job, this.#o.runner);
    const inputs = await this.#dependencies(job);
    return this.#o.cache.withStepLock(job.key, async () => (await this.#raced(job)) ?? (await this.#runAndStore(job, inputs)));
  }

  /** the artifact directories a step reads, each verified (and built first when missing or corrupt) */
  async #dependencies(job: Job): Promise<Pick<StepRequest, 'inputs' | 'modelDir'>> {
    for (const key of inputKeys(job)) await this.#usable(key);
    const inputs: StepRequest['inputs'] = {};
    for (const [role, keys] of Object.entries(job.inputs)) {
      inputs[role] = Array.isArray(keys) ? await Promise.all(keys.map((k) => this.#inputDir(k))) : await this.#inputDir(keys);
    }
    const modelDir = job.modelStep ? (await this.#inputDir(job.modelStep)).dir : job.node.model?.kind === 'dir' ? job.node.model.dir : undefined;
    return { inputs, modelDir };
  }

  async #inputDir(key: Digest): Promise<StepInputDir> {
    const entry = await this.#usable(key);
    const job = this.#job(key);
    return { id: job.node.id, kind: job.node.kind, dir: entry.dir, result: entry.meta.result };
  }

  /** an input's entry with its files verified; a corrupt or missing one is built again */
  async #usable(key: Digest): Promise<CacheEntry> {
    const job = this.#job(key);
    let entry = this.#entries.get(key) ?? (await this.#o.cache.lookup(job.record.kind, key));
    if (entry && !(await this.#verify(job, entry))) entry = undefined;
    entry ??= await this.#build(job);
    this.#entries.set(key, entry);
    return entry;
  }

  /** whether the entry's files match their digests; a corrupt entry is evicted, and its job reported anew once rebuilt */
  async #verify(job: Job, entry: CacheEntry): Promise<boolean> {
    if (this.#verified.has(job.key)) return true;
    const check = await this.#o.cache.verify(entry);
    if (check.ok) {
      this.#verified.add(job.key);
      return true;
    }
    this.#o.emit({ event: 'log', level: 'warn', id: job.node.id, message: `cache entry of ${job.node.id} is corrupt (${check.problem}); rebuilding it` });
    await this.#o.cache.evict(job.record.kind, job.key, check.problem);
    this.#entries.delete(job.key);
    this.#reported.delete(job.key);
    this.#outcomes.delete(job.key);
    return false;
  }

  /** an entry another run stored while this one waited for the step's lock */
  async #raced(job: Job): Promise<CacheEntry | undefined> {
    const entry = await this.#o.cache.lookup(job.record.kind, job.key);
    if (entry) this.#report(job, entry, 'cached', 0);
    return entry;
  }

  async #runAndStore(job: Job, deps: Pick<StepRequest, 'inputs' | 'modelDir'>): Promise<CacheEntry> {
    this.#checkAbort();
    const { id, kind, group, params, files, deviceDependent } = job.node;
    this.#o.emit({ event: 'step-start', id, kind, group });
    const t0 = performance.now();
    const pending = await this.#o.cache.begin(job.record.kind, job.key);
    let result: Json;
    try {
      result = await (this.#o.runner as StepRunner).run({ id, kind, params, files, deviceDependent, ...deps, outDir: pending.dir }, this.#callbacks(id), this.#o.signal);
    } catch (e) {
      await pending.abort();
      throw this.#failed(job, onFullDisk(e, this.#o.cache.root));
    }
    const ms = performance.now() - t0;
    let entry: CacheEntry;
    try {
      entry = await pending.commit({ record: job.record, stepId: id, result, elapsedMs: ms });
    } catch (e) {
      // the pending directory is gone either way: no partial entry is left
      throw this.#failed(job, onFullDisk(e, this.#o.cache.root));
    }
    this.#verified.add(job.key);
    this.#report(job, entry, 'ran', ms);
    return entry;
  }

  /** the remote rung: inputs in the shared store, then the step on another machine, which stores its entry */
  async #dispatch(job: Job, runner: RemoteRunner): Promise<CacheEntry> {
    await Promise.all(inputKeys(job).map((key) => this.#inShared(key)));
    this.#checkAbort();
    const { id, kind, group } = job.node;
    this.#o.emit({ event: 'step-start', id, kind, group });
    let outcome;
    try {
      outcome = await runner.submit(this.#remoteStep(job), this.#callbacks(id), this.#o.signal);
    } catch (e) {
      throw this.#failed(job, e);
    }
    const entry = await this.#o.cache.lookup(job.record.kind, job.key);
    if (!entry) throw this.#failed(job, new ReasonedError('queue-entry-missing', `${id} finished on the queue, but ${kind}/${job.key.slice(0, 12)} is not in ${this.#o.cache.location}`));
    this.#shared.add(job.key);
    this.#report(job, entry, outcome.result, outcome.ms);
    return entry;
  }

  /**
   * An input of a remote step: visited, and in the store every machine reads (a hit in an S3 store's local
   * copy does not say the bucket still has it); an input the shared store lost is built again, once.
   */
  async #inShared(key: Digest): Promise<void> {
    const job = this.#job(key);
    await this.#visitOnce(job);
    if (this.#shared.has(key)) return;
    let rebuild = this.#rebuilds.get(key);
    if (!rebuild) {
      rebuild = (async () => {
        if (await inspectShared(this.#o.cache, job.record.kind, key)) return;
        this.#o.emit({ event: 'log', level: 'warn', id: job.node.id, message: `${job.node.id} is not in ${this.#o.cache.location} (only in this machine's copy); building it again` });
        await this.#o.cache.evict(job.record.kind, key, `not in ${this.#o.cache.location}`);
        this.#reported.delete(key);
        this.#outcomes.delete(key);
        this.#entries.set(key, await this.#dispatch(job, this.#o.runner as RemoteRunner));
      })();
      this.#rebuilds.set(key, rebuild);
    }
    await rebuild;
    this.#shared.add(key);
  }

  #remoteStep(job: Job): RemoteStep {
    const ref = (key: Digest): StepRef => {
      const j = this.#job(key);
      return { key, kind: j.record.kind, id: j.node.id };
    };
    const inputs: RemoteStep['inputs'] = {};
    for (const [role, keys] of Object.entries(job.inputs)) inputs[role] = Array.isArray(keys) ? keys.map(ref) : ref(keys);
    const { id, group, files, deviceDependent, model } = job.node;
    const where = job.modelStep ? { step: ref(job.modelStep) } : model?.kind === 'dir' ? { dir: model.dir } : undefined;
    return { key: job.key, record: job.record, id, group, files, deviceDependent, inputs, model: where };
  }

  #callbacks(id: string): StepCallbacks {
    return {
      progress: (done, total, message) => this.#o.emit({ event: 'step-progress', id, done, total, ...(message ? { message } : {}) }),
      warn: (message) => this.#o.emit({ event: 'log', level: 'warn', id, message }),
    };
  }

  /** what a run's error becomes: an interruption, or a step-failed event with its reason and recipe location */
  #failed(job: Job, e: unknown): Error {
    if (e instanceof InterruptedError || this.#o.signal.aborted) return new InterruptedError();
    const failure = toFailure(e);
    const location = failure.location ?? job.node.origin;
    const { id, kind, group } = job.node;
    this.#o.emit({ event: 'step-failed', id, kind, group, message: failure.message, reason: failure.reason, ...(location ? { location: sourcePosition(location) } : {}) });
    return new StepFailure(failure.message);
  }

  /** one step-done event per job (again after a rebuild), its outcome recorded for the counts */
  #report(job: Job, entry: CacheEntry, result: StepResult, ms: number): void {
    if (this.#reported.has(job.key)) return;
    this.#reported.add(job.key);
    this.#outcomes.set(job.key, result);
    this.#o.emit({ event: 'step-done', id: job.node.id, kind: job.node.kind, group: job.node.group, result, ms, metrics: entry.meta.result });
  }

  #checkAbort(): void {
    if (this.#o.signal.aborted) throw new InterruptedError();
    if (this.#halted) throw new Halted();
  }

  #job(key: Digest): Job {
    const job = this.#jobs.get(key);
    if (!job) throw new Error(`plan error: no job with key ${key}`);
    return job;
  }

  #result(end: 'ok' | 'interrupted' | 'failed'): ExecResult {
    const perKind: ExecResult['perKind'] = {};
    let ran = 0;
    let cached = 0;
    for (const [key, outcome] of this.#outcomes) {
      (perKind[this.#job(key).node.kind] ??= { ran: 0, cached: 0 })[outcome]++;
      if (outcome === 'ran') ran++;
      else cached++;
    }
    return { ok: end === 'ok', interrupted: end === 'interrupted', entries: this.#entries, ran, cached, failed: end === 'failed' ? 1 : 0, perKind };
  }
}
