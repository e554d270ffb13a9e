// The coordinator's side of the queue: a RemoteRunner that enqueues each ready step as a BullMQ job (jobId =
// the step's key, so coordinators running the same steps share jobs) and follows it through QueueEvents: the
// workers' progress and warnings become the step's callbacks, `completed` resolves, `failed` rejects with the
// worker's reason. Attempts and exponential backoff are BullMQ job options. Losing Redis for longer than
// `reconnectMs` fails every waiting step with a message that says the stored steps are kept; after a shorter
// outage the waiting jobs are added again (a no-op for jobs Redis kept, a new job for those it lost).

import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { Queue, QueueEvents, type JobsOptions } from 'bullmq';
import type { Digest } from '../../cache/key.js';
import type { ReasonedError } from '../../diag/failure.js';
import { InterruptedError, type RemoteOutcome, type RemoteRunner, type RemoteStep, type StepCallbacks } from '../runner.js';
import { probeQueue, QUEUE_NAME, type JobSettings, type QueueTarget } from './connection.js';
import { QueueError } from './queue-error.js';
import { decodeFailure, type StepJobData, type StepJobProgress, type StepJobResult } from './step-job.js';

interface Waiter {
  data: StepJobData;
  cb: StepCallbacks;
  resolve(r: StepJobResult): void;
  reject(e: Error): void;
}

export interface QueueRunnerOptions {
  settings: JobSettings;
  /** model directories and source files uploaded into the store (path → upload key) */
  uploads?: Record<string, Digest>;
  /** told when no worker listens, and when Redis goes away and comes back */
  onWarn?: (message: string) => void;
}

export class QueueRunner implements RemoteRunner {
  readonly remote = true;
  readonly target: QueueTarget;
  readonly #o: QueueRunnerOptions;
  readonly #queue: Queue<StepJobData, StepJobResult>;
  readonly #events: QueueEvents;
  /** waiting steps by key (= jobId) */
  readonly #waiting = new Map<string, Waiter>();
  /** which coordinator enqueued a job: that one reports the step as ran */
  readonly #id = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  #lost: ReasonedError | undefined;
  #outage: NodeJS.Timeout | undefined;
  #warnedIdle = false;

  private constructor(target: QueueTarget, o: QueueRunnerOptions) {
    this.target = target;
    this.#o = o;
    this.#queue = new Queue(QUEUE_NAME, { connection: target.connection });
    this.#events = new QueueEvents(QUEUE_NAME, { connection: target.connection });
    this.#events.on('progress', ({ jobId, data }) => this.#progress(jobId, data as StepJobProgress));
    this.#events.on('completed', ({ jobId, returnvalue }) => this.#waiting.get(jobId)?.resolve(returnvalue as unknown as StepJobResult));
    this.#events.on('failed', ({ jobId, failedReason }) => {
      const w = this.#waiting.get(jobId);
      w?.reject(decodeFailure(failedReason, w.data.id));
    });
    this.#queue.on('error', (e: Error) => this.#disconnected(e));
    this.#events.on('error', (e: Error) => this.#disconnected(e));
  }

  /** check that Redis answers (a QueueError, exit 2, before any compute), then connect the queue and its events */
  static async open(target: QueueTarget, o: QueueRunnerOptions): Promise<QueueRunner> {
    await probeQueue(target);
    const runner = new QueueRunner(target, o);
    await Promise.all([runner.#queue.waitUntilReady(), runner.#events.waitUntilReady()]);
    for (const client of await Promise.all([runner.#queue.backend.client, runner.#events.backend.client])) client.on('ready', () => runner.#reconnected());
    return runner;
  }

  async submit(step: RemoteStep, cb: StepCallbacks, signal: AbortSignal): Promise<RemoteOutcome> {
    if (this.#lost) throw this.#lost;
    const data: StepJobData = { ...step, coordinator: this.#id, uploads: this.#o.uploads ?? {} };
    let onAbort = (): void => undefined;
    const done = new Promise<StepJobResult>((resolve, reject) => {
      this.#waiting.set(step.key, { data, cb, resolve, reject });
      onAbort = () => reject(new InterruptedError());
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      // listening first, then adding: no completion can be missed
      await this.#add(data);
      // a job this key left failed by an earlier run is still there (the add was a no-op): run it again
      if ((await this.#queue.getJobState(step.key)) === 'failed') await (await this.#queue.getJob(step.key))?.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
      void this.#warnIfNoWorker();
      const r = await done;
      return { result: r.ran && r.coordinator === this.#id ? 'ran' : 'cached', ms: r.ms };
    } finally {
      this.#waiting.delete(step.key);
      signal.removeEventListener('abort', onAbort);
    }
  }

  async close(): Promise<void> {
    clearTimeout(this.#outage);
    // Redis may be gone: do not wait on it to say goodbye
    const bye = Promise.all([this.#events.close(), this.#queue.close()]).catch(() => undefined);
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, 2000).unref());
    await Promise.race([bye, timeout]);
    await Promise.all([this.#events.disconnect(), this.#queue.disconnect()]).catch(() => undefined);
  }

  #add(data: StepJobData): Promise<unknown> {
    const { attempts, backoffMs } = this.#o.settings;
    const opts: JobsOptions = {
      jobId: data.key,
      attempts,
      backoff: { type: 'exponential', delay: backoffMs },
      // the store is the record of finished steps: a completed job need not stay
      removeOnComplete: true,
      removeOnFail: { age: 7 * 24 * 3600 },
    };
    return this.#queue.add(data.record.kind, data, opts);
  }

  #progress(jobId: string, p: StepJobProgress): void {
    const w = this.#waiting.get(jobId);
    if (!w) return;
    if ('warn' in p) w.cb.warn(p.warn);
    else if ('worker' in p) w.cb.progress(0, 1, `on ${p.worker}`);
    else w.cb.progress(p.done, p.total, p.message);
  }

  async #warnIfNoWorker(): Promise<void> {
    if (this.#warnedIdle) return;
    this.#warnedIdle = true;
    const workers = await this.#queue.getWorkersCount().catch(() => 1);
    if (workers === 0) this.#o.onWarn?.(`no worker is connected to ${this.target.url} yet: steps wait in the queue until one starts (quantforge worker --queue ${this.target.url} --store …)`);
  }

  /** Redis errors repeat while ioredis reconnects: the first one starts the clock */
  #disconnected(e: Error): void {
    if (this.#outage || this.#lost) return;
    this.#o.onWarn?.(`lost the connection to the queue ${this.target.url} (${e.message}); waiting ${Math.round(this.#o.settings.reconnectMs / 1000)} s for it`);
    this.#outage = setTimeout(() => {
      this.#lost = new QueueError(
        'queue-connection-lost',
        `lost the connection to the queue ${this.target.url} (${e.message}) for ${Math.round(this.#o.settings.reconnectMs / 1000)} s; the steps already finished are in the store: run again to resume`,
      );
      for (const w of this.#waiting.values()) w.reject(this.#lost);
    }, this.#o.settings.reconnectMs);
  }

  #reconnected(): void {
    if (!this.#outage || this.#lost) return;
    clearTimeout(this.#outage);
    this.#outage = undefined;
    this.#o.onWarn?.(`reconnected to the queue ${this.target.url}`);
    // jobs Redis lost (a restart without persistence) are added again; those it kept stay as they are
    for (const w of this.#waiting.values()) void this.#add(w.data).catch(() => undefined);
  }
}
