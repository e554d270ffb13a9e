// What travels through Redis: one BullMQ job per step, its id the step's Merkle key, so every coordinator that
// enqueues a step shares one job and the step runs once. The job carries the key record (a worker recomputes
// the key with its own versions before running anything), its inputs by key (the shared store serves them)
// and its sources by path (or as uploads in the store). Progress and warnings come back through
// job.updateProgress; failures through BullMQ's failedReason, as `[reason] message`.

import type { Digest, Json } from '../../cache/key.js';
import { ReasonedError, type Failure, type FailureReason } from '../../diag/failure.js';
import type { RemoteStep } from '../runner.js';

export interface StepJobData extends RemoteStep {
  /** the coordinator that enqueued the job: it reports the step as ran, any other one sharing the job as cached */
  coordinator: string;
  /** paths of source files and model directories uploaded into the store (exec/queue/uploads.ts), with their upload keys */
  uploads: Record<string, Digest>;
}

export interface StepJobResult {
  /** false when the worker found the entry stored already (another job, or a run without the queue) */
  ran: boolean;
  coordinator: string;
  /** which worker took the job (`host:pid`) */
  worker: string;
  ms: number;
  /** the step's metrics, as its entry's meta.json holds them */
  result: Json;
}

/** what job.updateProgress carries: a step's progress, a warning, or which worker took the job */
export type StepJobProgress = { done: number; total: number; message?: string } | { warn: string } | { worker: string };

/** BullMQ keeps an error's message as the job's failedReason: the reason goes in front of it */
export function encodeFailure(f: Pick<Failure, 'reason' | 'message'>): string {
  return `[${f.reason}] ${f.message}`;
}

/** a failedReason as an error; one without a reason of ours (BullMQ's own, e.g. a job stalled too often) is `queue-job-failed` */
export function decodeFailure(failedReason: string, id: string): ReasonedError {
  const m = /^\[([a-z0-9-]+)\] ([\s\S]*)$/.exec(failedReason);
  if (m) return new ReasonedError(m[1] as FailureReason, m[2]!);
  return new ReasonedError('queue-job-failed', `the queue failed the job of ${id}: ${failedReason}`);
}

/**
 * Failures worth another attempt (on this worker or another): the store or the compute thread, not the step.
 * A step is a pure function of its inputs, so a step that failed fails again; it is not retried.
 */
export function retryable(reason: FailureReason): boolean {
  return reason === 'worker-exited' || (reason.startsWith('store-') && reason !== 'store-invalid-url');
}
