// Real processes for the job-queue tests and bench/queue.ts: a redis-server of its own on a free 127.0.0.1
// port (no persistence), `quantforge worker` child processes reading JSON events, and a workspace holding the
// smoothing sweep example made affordable (its model written once and read by path, fewer calibration
// samples and evaluation windows, four variants, a compressed-tensors output).

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Runtime } from '../../src/ort/session.js';
import { writeExampleModel } from '../../src/steps/example-model.js';
import { REPO } from '../e2e/shared.js';
import { CLI, type RunEvent, type Workspace } from '../reliability/workspace.js';

export interface TestRedis {
  url: string;
  port: number;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** redis-server on 127.0.0.1 and a free port (or `port`), without snapshots or an append-only file; resolves once it accepts connections */
export async function startRedis(port?: number): Promise<TestRedis> {
  port ??= await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  await new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`redis-server exited (${code}): ${log}`)));
    child.stdout.on('data', (d: Buffer) => {
      log += d.toString();
      if (log.includes('Ready to accept connections')) resolve();
    });
  });
  child.removeAllListeners('exit');
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop: () => stopChild(child),
  };
}

export function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

export interface WorkerProcess {
  child: ChildProcess;
  events: RunEvent[];
  stderr: () => string;
  /** told every JSON event as it arrives */
  onEvent?: (e: RunEvent) => void;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** `quantforge worker --json` on the queue with its own local directory; resolves once it listens */
export async function startWorker(redis: TestRedis, args: readonly string[], cwd: string, env: Record<string, string> = {}): Promise<WorkerProcess> {
  const child = spawn(process.execPath, [CLI, 'worker', '--queue', redis.url, '--json', '--device', 'cpu', '--threads', '1', ...args], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const w: WorkerProcess = { child, events: [], stderr: () => stderr, stop: (signal) => stopChild(child, signal) };
  let buf = '';
  await new Promise<void>((resolve, reject) => {
    child.on('exit', (code) => reject(new Error(`worker exited (${code}) before listening: ${stderr}`)));
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const e = JSON.parse(buf.slice(0, i)) as RunEvent;
        buf = buf.slice(i + 1);
        w.events.push(e);
        w.onEvent?.(e);
        if (e.event === 'log' && String(e['message']).startsWith('worker ')) resolve();
      }
    });
  });
  child.removeAllListeners('exit');
  return w;
}

export const SWEEP = ['stages[0].smoothing_strength=0.5,0.6,0.7,0.8'];

/** the example model of examples/sweep-smoothing, written once into `dir` (workers read it there, as on a shared filesystem) */
export async function writeModel(dir: string): Promise<string> {
  const rt = new Runtime({ device: 'cpu', threads: 1 });
  try {
    await writeExampleModel(rt, dir, { size: 'tiny', seed: 0, dtype: 'f32' });
  } finally {
    await rt.close();
  }
  return dir;
}

/**
 * examples/sweep-smoothing on the model directory `model` (see writeModel), with 16 calibration samples,
 * 4 evaluation windows and a compressed-tensors output
 */
export async function sweepWorkspace(model: string, parent = tmpdir()): Promise<Workspace> {
  const dir = await mkdtemp(join(parent, 'qf-queue-'));
  const text = readFileSync(join(REPO, 'examples/sweep-smoothing/recipe.yaml'), 'utf8')
    .replace('model: { example: tiny, seed: 0 }', `model: ${JSON.stringify(model)}`)
    .replace('samples: 64', 'samples: 16')
    .replace('seq_len: 128 }\nsweep', 'seq_len: 128, max_windows: 4 }\noutputs:\n  - { format: compressed-tensors, path: out/ct }\nsweep');
  if (!text.includes('max_windows: 4') || !text.includes('samples: 16') || !text.includes(model)) throw new Error('examples/sweep-smoothing/recipe.yaml changed: update sweepWorkspace');
  await writeFile(join(dir, 'recipe.yaml'), text);
  await mkdir(join(dir, 'out'), { recursive: true });
  return { dir, recipe: join(dir, 'recipe.yaml'), cache: join(dir, 'cache') };
}

/** ids of the step-done events with `result` */
export function doneIds(events: readonly RunEvent[], result: 'ran' | 'cached'): string[] {
  return events.filter((e) => e.event === 'step-done' && e.result === result).map((e) => e.id!);
}
