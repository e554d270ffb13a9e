// The options that send a build's steps to a job queue (run, sweep) and those a worker takes jobs with:
// `--queue redis://host:port` (else $QUANTFORGE_QUEUE) and BullMQ's settings. Redis that cannot be used is
// bad input: a one-line error and exit 2, before anything is computed.

import { JOB_DEFAULTS, parseQueueUrl, probeQueue, WORKER_DEFAULTS, type JobSettings, type QueueTarget, type WorkerSettings } from '../exec/queue/connection.js';
import { QueueError } from '../exec/queue/queue-error.js';
import { intOption, stringOption, UsageError, type OptionSpec } from './command.js';

export const queueOptions: Record<string, OptionSpec> = {
  queue: { type: 'string' },
  attempts: { type: 'string' },
  backoff: { type: 'string' },
  reconnect: { type: 'string' },
  upload: { type: 'boolean', default: false },
};

export const queueHelp = [
  '  --queue URL        run the steps on the workers of a job queue: redis://[user:password@]host[:port][/db]',
  '                     (default $QUANTFORGE_QUEUE); needs a store every worker reads (--store)',
  `  --attempts N       runs of a step whose store or compute thread failed (default ${JOB_DEFAULTS.attempts})`,
  `  --backoff MS       delay before the first retry, doubled after each (default ${JOB_DEFAULTS.backoffMs})`,
  `  --reconnect MS     how long to wait for a lost Redis before failing (default ${JOB_DEFAULTS.reconnectMs})`,
  '  --upload           upload the model directory and datasets into the store once, for workers that',
  '                     cannot read them at this machine\'s paths',
].join('\n');

export const workerOptions: Record<string, OptionSpec> = {
  queue: { type: 'string' },
  concurrency: { type: 'string' },
  'lock-duration': { type: 'string' },
  'stalled-interval': { type: 'string' },
  'max-stalled': { type: 'string' },
};

export const workerHelp = [
  '  --queue URL        the job queue: redis://[user:password@]host[:port][/db] (default $QUANTFORGE_QUEUE)',
  `  --concurrency N    steps run at once, each in its own compute thread (default ${WORKER_DEFAULTS.concurrency})`,
  `  --lock-duration MS a job's lock, renewed while its step runs; a dead worker's job is taken over after`,
  `                     about this long (default ${WORKER_DEFAULTS.lockDurationMs})`,
  `  --stalled-interval MS  how often to look for jobs of dead workers (default ${WORKER_DEFAULTS.stalledIntervalMs})`,
  `  --max-stalled N    a job whose worker died more often than this fails (default ${WORKER_DEFAULTS.maxStalledCount})`,
].join('\n');

export interface QueueChoice {
  target: QueueTarget;
  settings: JobSettings;
  /** --upload: sources go into the store */
  upload: boolean;
}

/** `--queue` (else $QUANTFORGE_QUEUE) and the job settings; undefined when the build runs here */
export function queueChoice(values: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): QueueChoice | undefined {
  const url = stringOption(values, 'queue') ?? (env['QUANTFORGE_QUEUE'] || undefined);
  const given = ['attempts', 'backoff', 'reconnect'].filter((n) => values[n] !== undefined);
  if (url === undefined) {
    if (given.length > 0 || values['upload'] === true) throw new UsageError(`--${given[0] ?? 'upload'} needs a queue (--queue or $QUANTFORGE_QUEUE)`);
    return undefined;
  }
  return {
    target: queueTarget(url),
    settings: {
      attempts: intOption(values, 'attempts') ?? JOB_DEFAULTS.attempts,
      backoffMs: intOption(values, 'backoff', 0) ?? JOB_DEFAULTS.backoffMs,
      reconnectMs: intOption(values, 'reconnect', 0) ?? JOB_DEFAULTS.reconnectMs,
    },
    upload: values['upload'] === true,
  };
}

/** the worker's queue (required) and settings */
export function workerChoice(values: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): { target: QueueTarget; settings: WorkerSettings } {
  const url = stringOption(values, 'queue') ?? (env['QUANTFORGE_QUEUE'] || undefined);
  if (url === undefined) throw new UsageError('a queue is required: --queue redis://host:port (or $QUANTFORGE_QUEUE)');
  return {
    target: queueTarget(url),
    settings: {
      concurrency: intOption(values, 'concurrency') ?? WORKER_DEFAULTS.concurrency,
      lockDurationMs: intOption(values, 'lock-duration') ?? WORKER_DEFAULTS.lockDurationMs,
      stalledIntervalMs: intOption(values, 'stalled-interval') ?? WORKER_DEFAULTS.stalledIntervalMs,
      maxStalledCount: intOption(values, 'max-stalled', 0) ?? WORKER_DEFAULTS.maxStalledCount,
    },
  };
}

/** Redis answers at the target: otherwise a usage error (exit 2) naming what failed */
export async function checkQueue(target: QueueTarget): Promise<void> {
  await probeQueue(target).catch(asUsage);
}

function queueTarget(url: string): QueueTarget {
  try {
    return parseQueueUrl(url);
  } catch (e) {
    return asUsage(e);
  }
}

function asUsage(e: unknown): never {
  throw e instanceof QueueError ? new UsageError(e.message) : e;
}
