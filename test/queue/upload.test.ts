// `run --upload` end to end, with real processes: redis-server on a free loopback port, s3rver as the shared
// store, a coordinator and one `quantforge worker` that can reach only the store. The model directory is
// moved away once the coordinator has planned, uploaded and queued its first step (it then says no worker
// is connected), before the worker starts: the worker builds everything from the uploads, the outputs equal
// a local run's, and a second run uploads nothing. Without --upload the same worker fails the first step,
// naming the path it cannot read and --upload.

import { existsSync } from 'node:fs';
import { mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { startS3, useS3Credentials, type TestS3 } from '../cache/s3-server.js';
import { fingerprint, fingerprintDiff, runCli, type CliRun, type RunEvent, type Workspace } from '../reliability/workspace.js';
import { doneIds, startRedis, startWorker, sweepWorkspace, writeModel, type TestRedis, type WorkerProcess } from './queue-harness.js';

let redis: TestRedis;
let s3: TestS3;
let restoreEnv: () => void;
let model: string;
let ws: Workspace;
let want: Map<string, string>;
const workers: WorkerProcess[] = [];
const SET = ['--set', 'stages[0].smoothing_strength=0.8'];
const away = (): string => `${model}.away`;

beforeAll(async () => {
  restoreEnv = useS3Credentials();
  [redis, s3] = await Promise.all([startRedis(), startS3({ preconditions: true })]);
  model = await writeModel(await mkdtemp(join(tmpdir(), 'qf-upload-model-')));
  ws = await sweepWorkspace(model);
  const local = await runCli(ws, ['run', 'recipe.yaml', '--json', '--device', 'cpu', '--threads', '1', '--cache-dir', join(ws.dir, 'local-store'), ...SET]);
  if (local.code !== 0) throw new Error(`the local run failed (${local.code}): ${local.stderr}`);
  want = (await fingerprint(join(ws.dir, 'out')))!;
  await rm(join(ws.dir, 'out'), { recursive: true, force: true });
});
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop('SIGKILL')));
  if (existsSync(away())) await rename(away(), model);
});
afterAll(async () => {
  await redis?.stop();
  await s3?.close();
  restoreEnv();
  await rm(model, { recursive: true, force: true });
  await rm(ws.dir, { recursive: true, force: true });
});

/** the shared S3 store under `prefix`, with a local copy of its own in `local` */
const s3Args = (prefix: string, local: string): string[] => ['--store', `s3://${s3.bucket}/${prefix}`, '--store-endpoint', s3.endpoint, '--cache-dir', local];

/**
 * the coordinator on the queue; once it warns that no worker is connected (planned, uploaded, first step
 * queued) the model directory goes away and one worker starts, in a directory of its own, on the same store
 */
async function coordinate(prefix: string, upload: boolean, name: string): Promise<{ run: CliRun; worker: WorkerProcess | undefined; sawModel: boolean[] }> {
  let started: Promise<WorkerProcess> | undefined;
  const sawModel: boolean[] = [];
  const workerDir = await mkdtemp(join(tmpdir(), 'qf-upload-worker-'));
  const run = await runCli(ws, ['run', 'recipe.yaml', '--json', '--device', 'cpu', '--queue', redis.url, ...s3Args(prefix, join(ws.dir, name)), ...(upload ? ['--upload'] : []), ...SET], {
    onEvent: (e: RunEvent, child) => {
      if (started || e.event !== 'log' || !String(e['message']).startsWith('no worker is connected')) return;
      started = rename(model, away()).then(async () => {
        sawModel.push(existsSync(model));
        const w = await startWorker(redis, s3Args(prefix, join(workerDir, 'cache')), workerDir);
        workers.push(w);
        return w;
      });
      // a worker that fails to start would leave the coordinator waiting for one: stop it, and the await below
      // rethrows the start error
      started.catch(() => child.kill('SIGKILL'));
    },
  });
  const worker = await started;
  await rm(workerDir, { recursive: true, force: true });
  return { run, worker, sawModel };
}

describe('run --upload', () => {
  test('a worker that sees only the store builds the run from the uploaded model; the outputs equal the local run; a rerun uploads nothing', async () => {
    const { run, worker, sawModel } = await coordinate('up', true, 'coord');
    expect(run.code, `${run.stderr}${JSON.stringify(run.events.slice(-3))}`).toBe(0);
    expect(worker).toBeDefined();
    expect(sawModel).toEqual([false]);
    const uploaded = run.events.filter((e) => e.event === 'log' && String(e['message']).startsWith('uploaded ')).map((e) => String(e['message']));
    // the model directory, and the calibration and evaluation texts inside it (model:calib.txt, model:eval.txt)
    expect(uploaded.some((m) => m.startsWith(`uploaded ${model} (`) && m.includes(`s3://${s3.bucket}/up`))).toBe(true);
    expect(uploaded.length).toBe(3);
    expect(fingerprintDiff(want, await fingerprint(join(ws.dir, 'out')))).toEqual([]);
    const ran = doneIds(worker!.events, 'ran');
    expect(ran).toContain('tokenize/calibration');
    expect(ran.length).toBe(Number(run.events.find((e) => e.event === 'summary')!['ran']));

    await rename(away(), model);
    await rm(join(ws.dir, 'out'), { recursive: true, force: true });
    const again = await runCli(ws, ['run', 'recipe.yaml', '--json', '--device', 'cpu', '--queue', redis.url, ...s3Args('up', join(ws.dir, 'coord-2')), '--upload', ...SET]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.events.filter((e) => e.event === 'log' && String(e['message']).startsWith('uploaded '))).toEqual([]);
    expect(doneIds(again.events, 'ran')).toEqual([]);
    expect(fingerprintDiff(want, await fingerprint(join(ws.dir, 'out')))).toEqual([]);
  });

  test('without --upload the worker cannot read the model path and the run fails naming it and --upload', async () => {
    const { run, worker } = await coordinate('plain', false, 'coord-plain');
    expect(worker).toBeDefined();
    expect(run.code).toBe(1);
    const failed = run.events.find((e) => e.event === 'step-failed')!;
    expect(failed['reason']).toBe('queue-source-missing');
    expect(String(failed['message'])).toContain(`cannot read ${model}`);
    expect(String(failed['message'])).toContain('--upload');
  });
});
