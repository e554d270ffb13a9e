// The Redis behind the job queue: `--queue redis://[user:password@]host[:port][/db]` (`rediss://` for TLS),
// else $QUANTFORGE_QUEUE, checked before anything is computed (nobody answering is bad input: one line, exit
// 2), and the BullMQ settings the coordinator and the workers use, with their defaults. Retries, backoff,
// stalled-job recovery and concurrency are BullMQ's; quantforge only chooses their values.

import type { RedisOptions } from 'bullmq';
import type { RedisOptions as ClientOptions } from 'ioredis';
import { QueueError } from './queue-error.js';

/** one queue per Redis database; separate projects use separate databases (`redis://host:6379/3`) */
export const QUEUE_NAME = 'quantforge-steps';

export interface QueueTarget {
  /** as given, the password masked (for messages) */
  url: string;
  connection: RedisOptions;
}

/** `redis://[user:password@]host[:port][/db]`; anything else is refused with the form expected */
export function parseQueueUrl(text: string): QueueTarget {
  const expected = 'expected redis://[user:password@]host[:port][/db]';
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new QueueError('queue-invalid-url', `queue "${text}" is not a URL; ${expected}`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new QueueError('queue-invalid-url', `queue ${text}: unsupported scheme "${u.protocol}//", ${expected}`);
  if (u.hostname === '') throw new QueueError('queue-invalid-url', `queue ${text}: no host; ${expected}`);
  const db = u.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d+$/.test(db)) throw new QueueError('queue-invalid-url', `queue ${text}: "${db}" is not a database number; ${expected}`);
  const connection: RedisOptions = {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port === '' ? 6379 : Number(u.port),
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(db !== '' ? { db: Number(db) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
  const shown = u.password ? text.replace(`:${u.password}@`, ':***@') : text;
  return { url: shown, connection };
}

/** connect once, without retrying, and PING: a QueueError naming what failed when Redis cannot be used */
export async function probeQueue(target: QueueTarget, timeoutMs = 3000): Promise<void> {
  // imported here: every command loads this module, only a run with a queue needs the client
  const { Redis } = await import('ioredis');
  const client = new Redis({ ...(target.connection as ClientOptions), lazyConnect: true, connectTimeout: timeoutMs, retryStrategy: () => null, maxRetriesPerRequest: 0, enableOfflineQueue: false });
  // connect() rejects with "Connection is closed"; the cause (ECONNREFUSED, ENOTFOUND) comes as an event
  let cause: NodeJS.ErrnoException | undefined;
  client.on('error', (e: NodeJS.ErrnoException) => (cause ??= e));
  try {
    await client.connect();
    await client.ping();
  } catch (e) {
    const err = cause ?? (e as NodeJS.ErrnoException);
    const why = /WRONGPASS|NOAUTH|NOPERM/.test(err.message) ? `refused the credentials (${err.message.split('\n')[0]})` : `cannot connect (${err.code ?? err.message})`;
    throw new QueueError('queue-unreachable', `queue ${target.url}: ${why}`);
  } finally {
    client.disconnect();
  }
}

/** how the coordinator enqueues a step (BullMQ job options) */
export interface JobSettings {
  /** runs of a job that fails for a reason worth retrying (a store that did not answer, a crashed compute thread) */
  attempts: number;
  /** the first retry's delay; each further one doubles it (BullMQ's exponential backoff) */
  backoffMs: number;
  /** how long the coordinator waits for Redis to come back after losing it before failing the run */
  reconnectMs: number;
}

export const JOB_DEFAULTS: JobSettings = { attempts: 3, backoffMs: 5_000, reconnectMs: 30_000 };

/** how a worker takes jobs (BullMQ worker options) */
export interface WorkerSettings {
  /** steps run at once, each in its own compute thread */
  concurrency: number;
  /**
   * how long a job's lock lives; BullMQ renews it every half of this while the step runs (the step computes in
   * a worker thread, so renewal is never starved), so this bounds how long a dead worker's job waits, not a step
   */
  lockDurationMs: number;
  /** how often a worker looks for jobs whose lock expired (their worker died) and puts them back in the queue */
  stalledIntervalMs: number;
  /** a job whose worker died more often than this fails instead of being put back */
  maxStalledCount: number;
}

export const WORKER_DEFAULTS: WorkerSettings = { concurrency: 1, lockDurationMs: 60_000, stalledIntervalMs: 30_000, maxStalledCount: 2 };
