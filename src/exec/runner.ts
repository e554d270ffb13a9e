// Where step implementations execute. onnxruntime's session.run blocks its thread, so the CLI runs steps in a
// worker thread (the main thread keeps rendering progress and handles Ctrl-C); tests may run fake steps
// in-process. Both speak the same StepRequest. A RemoteRunner (the job queue, exec/queue/) hands a step to
// another machine instead: it reads its inputs from the shared store and commits its result there.

import { Worker } from 'node:worker_threads';
import type { Digest, Json, KeyRecord } from '../cache/key.js';
import type { Provider } from '../ort/device.js';
import type { Runtime } from '../ort/session.js';
import type { StepDef, StepImpl, StepInputDir } from '../steps/types.js';
import { ReasonedError, type Failure } from '../diag/failure.js';
import type { StepResult } from './events.js';

export interface StepRequest {
  id: string;
  kind: string;
  /** the step's params as its plan node holds them (plain data) */
  params: unknown;
  inputs: Record<string, StepInputDir | StepInputDir[]>;
  files: Record<string, string>;
  modelDir: string | undefined;
  outDir: string;
  /**
   * false for steps declared provider-independent (their key has no device): they run on the CPU provider
   * whatever the device, so their artifact really is the same for every device (the example model samples
   * its text with the model)
   */
  deviceDependent: boolean;
}

export interface StepCallbacks {
  progress(done: number, total: number, message?: string): void;
  warn(message: string): void;
}

export interface StepRunner {
  run(req: StepRequest, cb: StepCallbacks, signal: AbortSignal): Promise<Json>;
  close(): Promise<void>;
}

/** a step named by its key, with its kind (where the store files it) and id (how messages name it) */
export interface StepRef {
  key: Digest;
  kind: string;
  id: string;
}

/** a step as another machine gets it: no local paths of artifacts, only keys, which the shared store serves */
export interface RemoteStep {
  key: Digest;
  /** the record the key is the hash of: the machine that runs the step recomputes it with its own versions */
  record: KeyRecord;
  id: string;
  group: string;
  /** source files by role, as paths on the machine that planned the run */
  files: Record<string, string>;
  deviceDependent: boolean;
  inputs: Record<string, StepRef | StepRef[]>;
  /** the model: a directory by path, or the artifact of a step (the example model) */
  model: { dir: string } | { step: StepRef } | undefined;
}

/** how a remote step's entry came to be: computed for this run, or found stored by another */
export interface RemoteOutcome {
  result: StepResult;
  ms: number;
}

/** runs steps elsewhere; the executor submits every ready step at once and the machines doing the work limit concurrency */
export interface RemoteRunner {
  readonly remote: true;
  /** resolves once the step's entry is in the shared store */
  submit(step: RemoteStep, cb: StepCallbacks, signal: AbortSignal): Promise<RemoteOutcome>;
  close(): Promise<void>;
}

export function isRemote(runner: StepRunner | RemoteRunner): runner is RemoteRunner {
  return (runner as Partial<RemoteRunner>).remote === true;
}

export class InterruptedError extends ReasonedError<'interrupted'> {
  constructor() {
    super('interrupted', 'interrupted');
  }
}

/**
 * The Runtime a step runs on: `device` for provider-dependent steps, a CPU Runtime (made on first use by
 * `cpu`) for provider-independent ones.
 */
export function runtimeFor(req: Pick<StepRequest, 'deviceDependent'>, device: Runtime, cpu: () => Runtime): Runtime {
  return req.deviceDependent === false && device.device !== 'cpu' ? cpu() : device;
}

/** runs steps on the calling thread (tests, fake steps); `cpu` serves provider-independent steps (default: `runtime`) */
/** a step kind's implementation, from a table of implementations or of declarations that load theirs (exec/step-impls.ts) */
export async function stepImpl(table: ReadonlyMap<string, StepImpl | StepDef>, kind: string): Promise<StepImpl> {
  const entry = table.get(kind);
  if (!entry) throw new Error(`no implementation for step kind "${kind}"`);
  return 'load' in entry ? entry.load() : entry;
}

export class InProcessRunner implements StepRunner {
  readonly #impls: ReadonlyMap<string, StepImpl | StepDef>;
  readonly #runtime: () => Runtime;
  readonly #cpu: () => Runtime;

  constructor(impls: ReadonlyMap<string, StepImpl | StepDef>, runtime: () => Runtime, cpu: () => Runtime = runtime) {
    this.#impls = impls;
    this.#runtime = runtime;
    this.#cpu = cpu;
  }

  async run(req: StepRequest, cb: StepCallbacks, signal: AbortSignal): Promise<Json> {
    const impl = await stepImpl(this.#impls, req.kind);
    const runtime = runtimeFor(req, this.#runtime(), this.#cpu);
    return impl.run({ ...req, runtime, progress: cb.progress, warn: cb.warn, signal });
  }

  async close(): Promise<void> {}
}

export type WorkerMessage =
  | { type: 'progress'; done: number; total: number; message?: string }
  | { type: 'warn'; message: string }
  | { type: 'done'; result: Json }
  /** the step threw: its reason, message, stack and location cross the thread boundary as data */
  | { type: 'error'; failure: Failure };

export interface WorkerConfig {
  /** resolved by the caller (resolveDevice), so the worker does not probe again */
  device: Provider;
  threads?: number;
}

/** one long-lived compute thread, so memoised onnxruntime sessions survive from step to step */
export class WorkerRunner implements StepRunner {
  #worker: Worker | undefined;
  readonly #config: WorkerConfig;

  constructor(config: WorkerConfig) {
    this.#config = config;
  }

  #spawn(): Worker {
    if (this.#worker) return this.#worker;
    const ts = import.meta.url.endsWith('.ts');
    if (ts) {
      // running from TypeScript sources (tests, development): register tsx inside the worker, then load it
      const url = new URL('./worker.ts', import.meta.url).href;
      const boot = `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(url)}); })`;
      this.#worker = new Worker(boot, { eval: true, workerData: this.#config });
    } else {
      this.#worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: this.#config });
    }
    this.#worker.unref();
    return this.#worker;
  }

  run(req: StepRequest, cb: StepCallbacks, signal: AbortSignal): Promise<Json> {
    const worker = this.#spawn();
    worker.ref();
    return new Promise<Json>((resolve, reject) => {
      const cleanup = (): void => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
        signal.removeEventListener('abort', onAbort);
        worker.unref();
      };
      const onMessage = (m: WorkerMessage): void => {
        if (m.type === 'progress') cb.progress(m.done, m.total, m.message);
        else if (m.type === 'warn') cb.warn(m.message);
        else if (m.type === 'done') {
          cleanup();
          resolve(m.result);
        } else {
          cleanup();
          reject(ReasonedError.from(m.failure));
        }
      };
      const onError = (e: Error): void => {
        cleanup();
        this.#worker = undefined;
        reject(new ReasonedError('worker-exited', `compute worker crashed: ${e.message}`, { cause: e }));
      };
      const onExit = (code: number): void => {
        cleanup();
        this.#worker = undefined;
        reject(signal.aborted ? new InterruptedError() : new ReasonedError('worker-exited', `compute worker exited with code ${code}`));
      };
      // the step stops at its next abort check and answers `error` (or `done` if it finished first); the
      // thread is not terminated under a running onnxruntime session, which aborts the whole process
      const onAbort = (): void => worker.postMessage({ type: 'abort' });
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
      signal.addEventListener('abort', onAbort, { once: true });
      worker.postMessage(req);
    });
  }

  async close(): Promise<void> {
    const w = this.#worker;
    this.#worker = undefined;
    if (w) await w.terminate();
  }
}
