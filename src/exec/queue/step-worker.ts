// A queue worker: a BullMQ Worker whose processor is a function of a step job. It runs the step with the same
// step code and the same compute runner as a local run (one compute thread per concurrent job, so
// onnxruntime never blocks the event loop that renews the job's lock), reads inputs from the shared store and
// commits the result there. Retries, backoff, stalled-job recovery (a worker that died mid-step: its lock
// expires and another worker's stalled check puts the job back) and concurrency are BullMQ's settings.
// The store's own step locks are not taken: BullMQ's job lock already gives a job one worker at a time, and
// a commit is first-wins, so a step computed twice (a queue worker and a local run) is still stored once.

import { hostname } from 'node:os';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import { DigestStatCache } from '../../cache/file-digest.js';
import type { Json } from '../../cache/key.js';
import { toFailure } from '../../diag/failure.js';
import type { Provider } from '../../ort/device.js';
import type { RunEvent } from '../events.js';
import { inspectShared, type StepStore } from '../../cache/step-store.js';
import { WorkerRunner, type StepCallbacks } from '../runner.js';
import { QUEUE_NAME, type QueueTarget, type WorkerSettings } from './connection.js';
import { checkJobKey, fetchInputs, resolveSources } from './job-sources.js';
import { encodeFailure, retryable, type StepJobData, type StepJobProgress, type StepJobResult } from './step-job.js';

export interface StepWorkerOptions {
  target: QueueTarget;
  settings: WorkerSettings;
  store: StepStore;
  /** resolved once by the command (resolveDevice); in the key of every provider-dependent step */
  device: Provider;
  /** onnxruntime threads of each compute thread */
  threads?: number | undefined;
  /** what the worker did, for its reporter */
  emit(e: RunEvent): void;
}

/** progress goes to Redis at most this often per job (warnings and the last tick always) */
const PROGRESS_INTERVAL_MS = 250;

export class StepWorker {
  /** how jobs and events name this worker */
  readonly name = `${hostname()}:${process.pid}`;
  readonly #o: StepWorkerOptions;
  readonly #worker: Worker<StepJobData, StepJobResult>;
  readonly #idle: WorkerRunner[];
  readonly #runners: WorkerRunner[];
  readonly #digests: DigestStatCache;
  #offline = false;

  constructor(o: StepWorkerOptions) {
    this.#o = o;
    const { concurrency, lockDurationMs, stalledIntervalMs, maxStalledCount } = o.settings;
    this.#runners = Array.from({ length: concurrency }, () => new WorkerRunner({ device: o.device, ...(o.threads ? { threads: o.threads } : {}) }));
    this.#idle = [...this.#runners];
    this.#digests = new DigestStatCache(o.store.root);
    this.#worker = new Worker<StepJobData, StepJobResult>(QUEUE_NAME, (job, _token, signal) => this.#process(job, signal), {
      connection: o.target.connection,
      name: this.name,
      concurrency,
      lockDuration: lockDurationMs,
      stalledInterval: stalledIntervalMs,
      maxStalledCount,
      autorun: false,
    });
    this.#worker.on('error', (e) => {
      if (this.#offline) return;
      this.#offline = true;
      o.emit({ event: 'log', level: 'warn', message: `queue ${o.target.url}: ${e.message}; reconnecting` });
    });
    this.#worker.on('active', () => (this.#offline = false));
  }

  /** take jobs until close; resolves once the worker is connected and listening */
  async start(): Promise<void> {
    void this.#worker.run().catch((e: Error) => this.#o.emit({ event: 'log', level: 'warn', message: `queue ${this.#o.target.url}: ${e.message}` }));
    await this.#worker.waitUntilReady();
  }

  /** stop taking jobs; without `force`, the jobs in progress finish first */
  async close(force = false): Promise<void> {
    await this.#worker.close(force);
    await Promise.all(this.#runners.map((r) => r.close()));
  }

  async #process(job: Job<StepJobData, StepJobResult>, signal: AbortSignal | undefined): Promise<StepJobResult> {
    const d = job.data;
    const kind = d.record.kind;
    const { id, group } = d;
    const t0 = performance.now();
    this.#o.emit({ event: 'step-start', id, kind, group });
    const send = (p: StepJobProgress): void => void job.updateProgress(p).catch(() => undefined);
    send({ worker: this.name });
    try {
      return await this.#o.store.withRun(async () => {
        const store = this.#o.store;
        const sources = await resolveSources(d, store, this.name);
        await checkJobKey(String(job.id), d, sources, { device: this.#o.device, digests: this.#digests, worker: this.name });
        const base = { coordinator: d.coordinator, worker: this.name };
        if (await inspectShared(store, kind, d.key)) {
          this.#o.emit({ event: 'step-done', id, kind, group, result: 'cached', ms: 0 });
          return { ...base, ran: false, ms: 0, result: null };
        }
        const inputs = await fetchInputs(d, store);
        const pending = await store.begin(kind, d.key);
        const runner = this.#idle.pop()!;
        let result: Json;
        try {
          const req = { id, kind, params: d.record.params, inputs, files: sources.files, modelDir: sources.modelDir, outDir: pending.dir, deviceDependent: d.deviceDependent };
          result = await runner.run(req, this.#callbacks(d, send), signal ?? new AbortController().signal);
        } catch (e) {
          await pending.abort();
          throw e;
        } finally {
          this.#idle.push(runner);
        }
        const ms = performance.now() - t0;
        await pending.commit({ record: d.record, stepId: id, result, elapsedMs: ms });
        this.#o.emit({ event: 'step-done', id, kind, group, result: 'ran', ms, metrics: result });
        return { ...base, ran: true, ms, result };
      });
    } catch (e) {
      const f = toFailure(e);
      this.#o.emit({ event: 'step-failed', id, kind, group, message: f.message, reason: f.reason });
      // a step is a pure function of its inputs: only the store or a crashed compute thread is worth retrying
      throw retryable(f.reason) ? new Error(encodeFailure(f)) : new UnrecoverableError(encodeFailure(f));
    }
  }

  /** the step's progress and warnings, to this worker's reporter and (throttled) to the coordinator */
  #callbacks(d: StepJobData, send: (p: StepJobProgress) => void): StepCallbacks {
    let last = 0;
    return {
      progress: (done, total, message) => {
        this.#o.emit({ event: 'step-progress', id: d.id, done, total, ...(message ? { message } : {}) });
        const now = performance.now();
        if (now - last < PROGRESS_INTERVAL_MS && done < total) return;
        last = now;
        send(message === undefined ? { done, total } : { done, total, message });
      },
      warn: (message) => {
        this.#o.emit({ event: 'log', level: 'warn', id: d.id, message });
        send({ warn: message });
      },
    };
  }
}
