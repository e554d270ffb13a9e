// The one runtime boundary: every onnxruntime-node call in quantforge goes through this file and its
// siblings under src/ort/. A Runtime owns the execution-provider choice, thread settings and the memo of
// sessions, keyed by a graph signature so each kernel graph is built and compiled once per shape.

import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import type { Device } from '../recipe/types.js';
import { resolveDevice } from './device.js';
import type { DType, Tensor } from '../tensor.js';
import type { Graph } from './graph.js';
import { ReasonedError } from '../diag/failure.js';

export { DEVICES, resolveDevice } from './device.js';

export interface RuntimeOptions {
  device?: Device;
  /** intra-op threads; defaults to the machine's available parallelism */
  threads?: number;
}

export type Feeds = Record<string, Tensor>;
export type Fetches = Record<string, Tensor>;

export class OrtRunError extends ReasonedError<'ort-session-failed'> {
  constructor(kernel: string, expected: readonly string[], fed: Feeds, cause: unknown) {
    const fedList = Object.entries(fed).map(([k, t]) => `${k}: ${t.dtype}[${t.dims.join(', ')}]`);
    super(
      'ort-session-failed',
      `onnxruntime failed in kernel "${kernel}": ${cause instanceof Error ? cause.message : String(cause)}\n` +
        `  expected inputs: ${expected.join(', ')}\n  fed: ${fedList.join('; ')}`,
    );
  }
}

function toOrt(t: Tensor): ort.Tensor {
  if (t.dtype === 'bfloat16') throw new Error('bfloat16 tensors cannot be fed to onnxruntime-node; convert to float32 first');
  return new ort.Tensor(t.dtype as ort.Tensor.Type, t.data as ort.Tensor.DataType, t.dims);
}

function fromOrt(t: ort.Tensor): Tensor {
  const dtype = (t.type === 'uint16' ? 'float16' : t.type) as DType;
  return { dtype, dims: [...t.dims], data: t.data as Tensor['data'] };
}

/** one compiled graph; `run` converts between quantforge tensors and onnxruntime tensors */
export class Kernel {
  readonly key: string;
  readonly #session: ort.InferenceSession;
  /** milliseconds spent inside session.run, for benchmarks */
  static busyMs = 0;

  constructor(key: string, session: ort.InferenceSession) {
    this.key = key;
    this.#session = session;
  }

  get inputNames(): readonly string[] {
    return this.#session.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.#session.outputNames;
  }

  /**
   * run with `feeds`; `outputs` names the outputs wanted (default all); `into` gives tensors some outputs are
   * written into in place (an output may share its buffer with an input, e.g. a KV cache updated in place)
   */
  async run(feeds: Feeds, outputs?: readonly string[], into?: Readonly<Record<string, Tensor>>): Promise<Fetches> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [k, t] of Object.entries(feeds)) ortFeeds[k] = toOrt(t);
    const t0 = performance.now();
    let result: ort.InferenceSession.ReturnType;
    try {
      if (into) {
        const fetches: Record<string, ort.Tensor | null> = {};
        for (const name of outputs ?? this.#session.outputNames) fetches[name] = into[name] ? toOrt(into[name]) : null;
        result = await this.#session.run(ortFeeds, fetches);
      } else result = outputs ? await this.#session.run(ortFeeds, outputs as string[]) : await this.#session.run(ortFeeds);
    } catch (e) {
      throw new OrtRunError(this.key, this.#session.inputNames, feeds, e);
    } finally {
      Kernel.busyMs += performance.now() - t0;
    }
    const out: Fetches = {};
    for (const [k, t] of Object.entries(result)) {
      const given = into?.[k];
      if (given) {
        out[k] = given;
        continue;
      }
      out[k] = fromOrt(t);
      t.dispose?.();
    }
    return out;
  }

  async release(): Promise<void> {
    await this.#session.release();
  }
}

export class Runtime {
  readonly device: 'cpu' | 'cuda';
  readonly notice: string | undefined;
  readonly threads: number;
  readonly #kernels = new Map<string, Promise<Kernel>>();

  constructor(options: RuntimeOptions = {}) {
    const resolved = resolveDevice(options.device ?? 'auto');
    this.device = resolved.device;
    this.notice = resolved.notice;
    this.threads = options.threads ?? availableParallelism();
  }

  #sessionOptions(): ort.InferenceSession.SessionOptions {
    return {
      executionProviders: this.device === 'cuda' ? ['cuda', 'cpu'] : ['cpu'],
      graphOptimizationLevel: 'all',
      intraOpNumThreads: this.threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      logSeverityLevel: 3,
      enableCpuMemArena: false,
    };
  }

  /** the memoised kernel for `key`, building its graph on first use */
  kernel(key: string, build: () => Graph | Uint8Array): Promise<Kernel> {
    let hit = this.#kernels.get(key);
    if (!hit) {
      hit = (async () => {
        const g = build();
        const bytes = g instanceof Uint8Array ? g : g.build();
        try {
          return new Kernel(key, await ort.InferenceSession.create(bytes, this.#sessionOptions()));
        } catch (e) {
          throw new ReasonedError('ort-session-failed', `onnxruntime could not create a session for kernel "${key}": ${e instanceof Error ? e.message : String(e)}`);
        }
      })();
      hit.catch(() => this.#kernels.delete(key));
      this.#kernels.set(key, hit);
    }
    return hit;
  }

  /** milliseconds spent inside onnxruntime by every kernel of this process so far */
  get busyMs(): number {
    return Kernel.busyMs;
  }

  /** a session over an ONNX file on disk (external data resolved relative to it); not memoised */
  async load(path: string): Promise<Kernel> {
    return new Kernel(path, await ort.InferenceSession.create(path, this.#sessionOptions()));
  }

  async close(): Promise<void> {
    for (const k of this.#kernels.values()) await (await k.catch(() => undefined))?.release();
    this.#kernels.clear();
  }
}
