// The job queue end to end, with real processes: redis-server on a free loopback port, s3rver as the shared
// store, `quantforge worker` child processes and `quantforge run|sweep --queue` coordinators. The smoothing
// sweep through two workers and two coordinators equals the local run byte for byte and computes each step
// once; a worker killed with SIGKILL mid-step loses nothing (BullMQ puts its job back, another worker runs
// it); a queue or store that cannot be used is a one-line error and exit 2 before any compute.

import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Queue, QueueEvents } from 'bullmq';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { computeKey } from '../../src/cache/key.js';
import { prepare } from '../../src/exec/prepare.js';
import { parseQueueUrl, QUEUE_NAME } from '../../src/exec/queue/connection.js';
import type { StepJobData } from '../../src/exec/queue/step-job.js';
import { startS3, useS3Credentials, type TestS3 } from '../cache/s3-server.js';
import { fingerprint, fingerprintDiff, runCli, type CliRun, type RunEvent, type Workspace } from '../reliability/workspace.js';
import { doneIds, startRedis, startWorker, sweepWorkspace, SWEEP, writeModel, type TestRedis, type WorkerProcess } from './queue-harness.js';

let redis: TestRedis;
let s3: TestS3;
let restoreEnv: () => void;
const workers: WorkerProcess[] = [];
/** the sweep built locally once: the reference outputs and its store, which later local runs take from */
let model: string;
let ws: Workspace;
let local: CliRun;
let want: Map<string, string>;
const localArgs = (): string[] => ['--json', '--device', 'cpu', '--threads', '1', '--cache-dir', join(ws.dir, 'local-store')];

beforeAll(async () => {
  restoreEnv = useS3Credentials();
  [redis, s3] = await Promise.all([startRedis(), startS3({ preconditions: true })]);
  model = await writeModel(await mkdtemp(join(tmpdir(), 'qf-queue-model-')));
  ws = await sweepWorkspace(model);
  local = await runCli(ws, ['sweep', 'recipe.yaml', ...localArgs(), '--set', SWEEP[0]!]);
  if (local.code !== 0) throw new Error(`the local sweep failed (${local.code}): ${local.stderr}${JSON.stringify(local.events.slice(-3))}`);
  want = await outputs(ws);
  await clearOutputs(ws);
});
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop('SIGKILL')));
});
afterAll(async () => {
  await redis?.stop();
  await s3?.close();
  restoreEnv();
});

/** the shared S3 store under `prefix`, with this process's own local copy in `local` */
const s3Args = (prefix: string, local: string): string[] => ['--store', `s3://${s3.bucket}/${prefix}`, '--store-endpoint', s3.endpoint, '--cache-dir', local];

function summaryOf(r: CliRun): RunEvent {
  const s = r.events.find((e) => e.event === 'summary');
  if (!s) throw new Error(`no summary (exit ${r.code}): ${r.stderr}`);
  return s;
}

/** every file of the outputs and sweep tables of a workspace (the report's lock file names the recipe path, the same in both runs) */
async function outputs(ws: Workspace): Promise<Map<string, string>> {
  const all = new Map<string, string>();
  for (const d of ['out', 'recipe.report', 'recipe.sweep']) for (const [f, h] of (await fingerprint(join(ws.dir, d))) ?? []) all.set(`${d}/${f}`, h);
  return all;
}

async function clearOutputs(ws: Workspace): Promise<void> {
  for (const d of ['out', 'recipe.report', 'recipe.sweep']) await rm(join(ws.dir, d), { recursive: true, force: true });
}

describe('quantforge worker and --queue', () => {
  test('the smoothing sweep through 2 workers and 2 coordinators on an S3 store equals the local run and computes each step once', async () => {
    const steps = Number(summaryOf(local)['ran']);
    expect(steps).toBeGreaterThan(20);

    // a second coordinator in a copy of the workspace: the same steps, so the same keys and the same jobs
    const other: Workspace = { ...ws, dir: `${ws.dir}-b`, recipe: `${ws.dir}-b/recipe.yaml` };
    await cp(ws.dir, other.dir, { recursive: true });
    for (let i = 0; i < 2; i++) workers.push(await startWorker(redis, s3Args('sweep', join(ws.dir, `worker-${i}`)), ws.dir));
    const coordinate = (w: Workspace, name: string): Promise<CliRun> =>
      runCli(w, ['sweep', 'recipe.yaml', '--json', '--device', 'cpu', '--queue', redis.url, ...s3Args('sweep', join(w.dir, name)), '--set', SWEEP[0]!]);
    const [a, b] = await Promise.all([coordinate(ws, 'coord-a'), coordinate(other, 'coord-b')]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);

    expect(fingerprintDiff(want, await outputs(ws))).toEqual([]);
    expect(summaryOf(b)['metrics']).toEqual(summaryOf(local)['metrics']);
    // each step computed once across both workers, both workers took some, and the coordinators ran nothing themselves
    const ran = workers.flatMap((w) => doneIds(w.events, 'ran'));
    expect(ran.length).toBe(steps);
    expect(new Set(ran).size).toBe(steps);
    for (const w of workers) expect(doneIds(w.events, 'ran').length).toBeGreaterThan(0);
    expect(Number(summaryOf(a)['ran']) + Number(summaryOf(b)['ran'])).toBe(steps);
    expect(Number(summaryOf(a)['failed']) + Number(summaryOf(b)['failed'])).toBe(0);
  });

  test('a worker killed with SIGKILL mid-step: another one completes its job, the store verifies and the outputs equal the undisturbed run', async () => {
    // a fifth variant, in a workspace of its own, on the sweep's stores: the captures and FP evaluation are
    // stored, its smoothing, quantization and evaluation run (locally for the reference, then on the queue)
    const one = await sweepWorkspace(model);
    const set = ['--set', 'stages[0].smoothing_strength=0.9'];
    const ref = await runCli(one, ['run', 'recipe.yaml', ...localArgs(), ...set]);
    expect(ref.code, ref.stderr).toBe(0);
    expect(doneIds(ref.events, 'ran')).toContain('evaluate/quantized');
    const wantOne = await outputs(one);
    await clearOutputs(one);
    const args = ['--json', '--device', 'cpu', ...set];

    // short locks and stalled checks, so a dead worker's job comes back within seconds
    const fast = ['--lock-duration', '1500', '--stalled-interval', '500'];
    const first = await startWorker(redis, [...fast, ...s3Args('sweep', join(one.dir, 'worker-a'))], one.dir);
    workers.push(first);
    let victim: string | undefined;
    const killed = new Promise<void>((resolve) => {
      first.onEvent = (e) => {
        // the first evaluation halfway through its windows: a long step, with progress made
        if (victim === undefined && e.event === 'step-progress' && String(e.id).startsWith('evaluate/') && Number(e['done']) >= 2) {
          victim = e.id!;
          first.child.kill('SIGKILL');
          resolve();
        }
      };
    });
    const run = runCli(one, ['run', 'recipe.yaml', ...args, '--queue', redis.url, ...s3Args('sweep', join(one.dir, 'coord'))]);
    await killed;
    const second = await startWorker(redis, [...fast, ...s3Args('sweep', join(one.dir, 'worker-b'))], one.dir);
    workers.push(second);
    const r = await run;
    expect(r.code, r.stderr).toBe(0);
    expect(first.child.signalCode).toBe('SIGKILL');
    expect(doneIds(first.events, 'ran')).not.toContain(victim);
    expect(doneIds(second.events, 'ran')).toContain(victim);
    expect(fingerprintDiff(wantOne, await outputs(one))).toEqual([]);

    const verify = await runCli(one, ['cache', 'verify', '--json', ...s3Args('sweep', join(one.dir, 'verify'))]);
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.events[0]).toMatchObject({ damaged: [] });
    const entries = await runCli(one, ['cache', 'ls', '--json', '--cache-dir', join(ws.dir, 'local-store')]);
    expect(Number(verify.events[0]!['entries'])).toBe((entries.events[0]!['entries'] as unknown[]).length);
  });

  test('Redis stopped during a run: the coordinator fails naming the queue, and a rerun recomputes no finished step', async () => {
    const one = await sweepWorkspace(model);
    const args = ['run', 'recipe.yaml', '--json', '--device', 'cpu', '--set', 'stages[0].smoothing_strength=0.95', '--reconnect', '1000', ...s3Args('sweep', join(one.dir, 'coord'))];
    const worker = await startWorker(redis, s3Args('sweep', join(one.dir, 'worker')), one.dir);
    workers.push(worker);
    const stopped = new Promise<void>((resolve) => {
      worker.onEvent = (e) => {
        // once a step is stored and another has begun: stop Redis (it keeps nothing: the queue is gone)
        if (e.event === 'step-start' && doneIds(worker.events, 'ran').length >= 2) {
          worker.onEvent = undefined;
          void redis.stop().then(resolve);
        }
      };
    });
    const first = runCli(one, [...args, '--queue', redis.url]);
    await stopped;
    const r = await first;
    expect(r.code).toBe(1);
    expect(r.events.find((e) => e.event === 'step-failed')).toMatchObject({ reason: 'queue-connection-lost' });
    expect(String(r.events.find((e) => e.event === 'step-failed')!['message'])).toContain(`lost the connection to the queue ${redis.url}`);
    const finished = doneIds(worker.events, 'ran');
    expect(finished.length).toBeGreaterThanOrEqual(2);

    redis = await startRedis(redis.port);
    const before = worker.events.length;
    const again = await runCli(one, [...args, '--queue', redis.url]);
    expect(again.code, again.stderr).toBe(0);
    const rerun = doneIds(worker.events.slice(before), 'ran');
    expect(rerun.length).toBeGreaterThan(0);
    for (const id of finished) expect(rerun).not.toContain(id);
    expect(doneIds(again.events, 'cached')).toEqual(expect.arrayContaining(finished));
  });

  test('a worker refuses a job whose key record it cannot reproduce: the job fails once with queue-key-mismatch and no step runs', async () => {
    const one = await sweepWorkspace(model);
    const prepared = await prepare(one.recipe, ['stages[0].smoothing_strength=0.7'], join(one.dir, 'plan'), 'cpu');
    if (!prepared.ok) throw new Error(prepared.diagnostics.map((d) => d.message).join('\n'));
    const job = prepared.value.jobs.find((j) => j.record.kind === 'tokenize')!;
    // the job of a coordinator whose tokenize step code is one version ahead of this worker's
    const record = { ...job.record, version: job.record.version + 1 };
    const key = computeKey(record);
    const { id, group, files, deviceDependent } = job.node;
    const data: StepJobData = { key, record, id, group, files, deviceDependent, inputs: {}, model: { dir: model }, coordinator: 'test', uploads: {} };
    const worker = await startWorker(redis, s3Args('refuse', join(one.dir, 'worker')), one.dir);
    workers.push(worker);
    const target = parseQueueUrl(redis.url);
    const queue = new Queue(QUEUE_NAME, { connection: target.connection });
    const events = new QueueEvents(QUEUE_NAME, { connection: target.connection });
    try {
      await events.waitUntilReady();
      const failed = new Promise<string>((resolve) => events.on('failed', (e) => e.jobId === key && resolve(e.failedReason)));
      await queue.add(record.kind, data, { jobId: key, attempts: 3, backoff: { type: 'fixed', delay: 10 } });
      const reason = await failed;
      expect(reason).toMatch(/^\[queue-key-mismatch\] worker \S+ refuses tokenize\/\S+: it would compute a different step than the job's key describes \(job → worker: version changed: \d+ → \d+\)/);
      expect((await queue.getJob(key))?.attemptsMade).toBe(1);
      expect(doneIds(worker.events, 'ran')).toEqual([]);
      expect(worker.events.find((e) => e.event === 'step-failed')).toMatchObject({ reason: 'queue-key-mismatch' });
    } finally {
      await events.close();
      await queue.close();
    }
  });

  test('a queue or store that cannot be used: one line, exit 2, nothing computed', async () => {
    const bad = await sweepWorkspace(model);
    bad.cache = join(bad.dir, 'store');
    const run = (extra: string[]): Promise<CliRun> => runCli(bad, ['run', 'recipe.yaml', '--device', 'cpu', '--set', 'stages[0].smoothing_strength=0.7', '--cache-dir', bad.cache, ...extra]);
    const deadRedis = `redis://127.0.0.1:${redis.port === 1 ? 2 : 1}`;
    const cases: [string[], RegExp][] = [
      [['--queue', deadRedis], /^quantforge run: queue redis:\/\/127\.0\.0\.1:\d+: cannot connect \(ECONNREFUSED\)\n$/],
      [['--queue', 'http://127.0.0.1:6379'], /^quantforge run: queue http:\/\/127\.0\.0\.1:6379: unsupported scheme "http:\/\/"/],
      [['--queue', redis.url, '--store', `s3://${s3.bucket}/x`, '--store-endpoint', 'http://127.0.0.1:1'], /^quantforge run: .*127\.0\.0\.1:1.*\n$/],
      [['--queue', redis.url, '--store', 's3://no-such-bucket/x', '--store-endpoint', s3.endpoint], /^quantforge run: .*no-such-bucket.*\n$/],
    ];
    for (const [extra, message] of cases) {
      const r = await run(extra);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
    }
    const worker = await runCli(bad, ['worker', '--queue', deadRedis, '--cache-dir', bad.cache]);
    expect(worker.code).toBe(2);
    expect(worker.stderr).toMatch(/^quantforge worker: queue redis:\/\/127\.0\.0\.1:\d+: cannot connect \(ECONNREFUSED\)\n$/);
    // nothing was computed: the local store holds no entry
    const kinds = existsSync(bad.cache) ? (await readdir(bad.cache)).filter((d) => !['tmp', 'locks', 'runs', 'history', 'digests.json'].includes(d)) : [];
    expect(kinds).toEqual([]);
  });
});
