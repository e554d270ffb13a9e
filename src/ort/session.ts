// The one runtime boundary: every onnxruntime-node call in quantforge goes through this file and its
// siblings under src/ort/. A Runtime owns the execution-provider choice, thread settings and the memo of
// sessions, keyed by a graph signature so each kernel graph is built and compiled once per shape.

import { mkdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { ReasonedError } from '../diag/failure.js';
import type { Device } from '../recipe/types.js';
import { resolveDevice, type Provider } from './device.js';
import { profileFile, readPlacements, type NodePlacement } from './placement.js';
import { ortValueOf, Resident } from './resident.js';
import type { DType, Tensor } from '../tensor.js';
import { Graph } from './graph.js';
import type { OnnxDType } from './proto.js';

export { DEVICES, DeviceError, PROVIDERS, resolveDevice, type Provider } from './device.js';
export { Resident } from './resident.js';
export type { NodePlacement } from './placement.js';

export interface RuntimeOptions {
  /** a provider, or 'auto' (resolved here: probes child processes, see device.ts); default 'cpu' */
  device?: Device;
  /** intra-op threads; defaults to the machine's available parallelism */
  threads?: number;
  /** write one onnxruntime profile per kernel into this directory, for Kernel.placements() */
  profileDir?: string;
}

export interface KernelOptions {
  /** outputs that stay on the device (WebGPU buffers) and come back as Residents from runKeep */
  keep?: readonly string[];
  /**
   * run on the CPU provider whatever the device: for kernels whose data lives on the host between calls
   * (JavaScript reads every output, e.g. GPTQ's linear algebra between column loops) or is float64, which
   * the WebGPU provider lacks. A GPU session would only add two copies per call (and, on WebGPU, a session).
   */
  host?: boolean;
  /**
   * false: the session's intra-op threads sleep when out of work instead of spinning (onnxruntime's
   * `session.intra_op.allow_spinning` 0; spinning is its default). For kernels called from JavaScript loops
   * (GPTQ's linear algebra, the calibration passes) and graphs run many times (AWQ's candidate losses,
   * AutoRound's block of ~1000 nodes): a spinning thread burns a core through the JavaScript work between calls
   * and between ops, which a shared machine's other work could use and which counts as CPU time (BENCHMARKS.md).
   * Results do not depend on it.
   */
  spin?: boolean;
  /**
   * true: freed buffers stay in an onnxruntime arena for the session's next call instead of going back to
   * the system, so calls with large intermediates do not fault fresh pages in every time; the arena lives
   * until the kernel is released (`Runtime.release`). Results are the same either way.
   */
  arena?: boolean;
  /**
   * false: onnxruntime's memory pattern is off (it plans one block per call from the first call's allocations).
   * With `arena`, the first call's freed buffers then serve every later call, where the pattern's block would be
   * allocated beside them from the second call on (twice the memory). Results are the same either way.
   */
  pattern?: boolean;
}

export type Feeds = Record<string, Tensor | Resident>;
export type Fetches = Record<string, Tensor>;

export class OrtRunError extends ReasonedError<'ort-session-failed'> {
  constructor(kernel: string, expected: readonly string[], fed: Feeds, cause: unknown) {
    const fedList = Object.entries(fed).map(([k, t]) => `${k}: ${t.dtype}[${t.dims.join(', ')}]${t instanceof Resident ? ' (resident)' : ''}`);
    super(
      'ort-session-failed',
      `onnxruntime failed in kernel "${kernel}": ${cause instanceof Error ? cause.message : String(cause)}\n` +
        `  expected inputs: ${expected.join(', ')}\n  fed: ${fedList.join('; ')}`,
    );
  }
}

function toOrt(t: Tensor | Resident): ort.Tensor {
  if (t instanceof Resident) return ortValueOf(t);
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
  readonly provider: Provider;
  readonly #session: ort.InferenceSession;
  readonly #keep: ReadonlySet<string>;
  readonly #profile: string | undefined;
  #profileEnded = false;
  /** milliseconds spent inside session.run, for benchmarks */
  static busyMs = 0;

  constructor(key: string, session: ort.InferenceSession, provider: Provider = 'cpu', keep: readonly string[] = [], profile?: string) {
    this.key = key;
    this.provider = provider;
    this.#session = session;
    this.#keep = new Set(keep);
    this.#profile = profile;
  }

  get inputNames(): readonly string[] {
    return this.#session.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.#session.outputNames;
  }

  /**
   * every output on the host; a kernel created with `keep` outputs needs runKeep. `outputs` names the outputs
   * wanted (default all); `into` gives tensors some outputs are written into in place (an output may share its
   * buffer with an input, e.g. a KV cache updated in place)
   */
  async run(feeds: Feeds, outputs?: readonly string[], into?: Readonly<Record<string, Tensor>>): Promise<Fetches> {
    if (this.#keep.size > 0) throw new Error(`kernel "${this.key}" keeps ${[...this.#keep].join(', ')} on the device: call runKeep`);
    return (await this.runKeep(feeds, outputs, into)).fetches;
  }

  /** host outputs in `fetches`; the `keep` outputs as Residents (device buffers on WebGPU, host tensors elsewhere) */
  async runKeep(feeds: Feeds, outputs?: readonly string[], into?: Readonly<Record<string, Tensor>>): Promise<{ fetches: Fetches; kept: Record<string, Resident> }> {
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
    const fetches: Fetches = {};
    const kept: Record<string, Resident> = {};
    for (const [k, t] of Object.entries(result)) {
      const given = into?.[k];
      if (given) fetches[k] = given;
      else if (this.#keep.has(k)) kept[k] = new Resident(t);
      else if (t.location === 'gpu-buffer') throw new Error(`kernel "${this.key}": output ${k} was left on the device without being kept`);
      else {
        fetches[k] = fromOrt(t);
        t.dispose?.();
      }
    }
    return { fetches, kept };
  }

  /** where each node ran, from the profile (a Runtime with profileDir); ends profiling of this kernel */
  placements(): NodePlacement[] {
    if (!this.#profile) throw new Error(`kernel "${this.key}" was not profiled: create the Runtime with profileDir`);
    if (!this.#profileEnded) {
      // onnxruntime writes the whole trace when profiling ends; the file exists but is empty before
      this.#session.endProfiling();
      this.#profileEnded = true;
    }
    const file = profileFile(this.#profile);
    if (!file) throw new Error(`kernel "${this.key}": onnxruntime wrote no profile at ${this.#profile}_*.json`);
    return readPlacements(file);
  }

  async release(): Promise<void> {
    await this.#session.release();
  }
}

export class Runtime {
  readonly device: Provider;
  /** why `auto` chose this provider (one line), when it was asked to choose */
  readonly notice: string | undefined;
  readonly threads: number;
  readonly #profileDir: string | undefined;
  readonly #kernels = new Map<string, Promise<Kernel>>();
  #profiles = 0;

  constructor(options: RuntimeOptions = {}) {
    const requested = options.device ?? 'cpu';
    const resolved = requested === 'auto' ? resolveDevice('auto') : { device: requested };
    this.device = resolved.device;
    this.notice = 'notice' in resolved ? resolved.notice : undefined;
    this.threads = options.threads ?? availableParallelism();
    this.#profileDir = options.profileDir;
    if (this.#profileDir) mkdirSync(this.#profileDir, { recursive: true });
  }

  #sessionOptions(key: string, provider: Provider, keep: readonly string[], k: KernelOptions): { options: ort.InferenceSession.SessionOptions; profile?: string } {
    const providers: ort.InferenceSession.ExecutionProviderConfig[] =
      provider === 'cuda' ? ['cuda', 'cpu'] : provider === 'webgpu' ? [{ name: 'webgpu' }, 'cpu'] : ['cpu'];
    const options: ort.InferenceSession.SessionOptions = {
      executionProviders: providers,
      graphOptimizationLevel: 'all',
      intraOpNumThreads: this.threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      logSeverityLevel: 3,
      enableCpuMemArena: k.arena === true,
      ...(k.pattern === false ? { enableMemPattern: false } : {}),
    };
    if (k.spin === false) options.extra = { session: { intra_op: { allow_spinning: '0' } } };
    // onnxruntime-node binds device memory for WebGPU only; elsewhere kept outputs come back to the host
    if (provider === 'webgpu' && keep.length > 0) options.preferredOutputLocation = Object.fromEntries(keep.map((k) => [k, 'gpu-buffer' as const]));
    if (!this.#profileDir) return { options };
    const profile = join(this.#profileDir, `${String(this.#profiles++).padStart(3, '0')}-${key.replace(/[^\w.-]+/g, '_').slice(0, 80)}`);
    return { options: { ...options, enableProfiling: true, profileFilePrefix: profile }, profile };
  }

  async #create(key: string, model: Uint8Array | string, keep: readonly string[], k: KernelOptions = {}): Promise<Kernel> {
    const provider = k.host ? 'cpu' : this.device;
    const { options, profile } = this.#sessionOptions(key, provider, keep, k);
    try {
      const session = typeof model === 'string' ? await ort.InferenceSession.create(model, options) : await ort.InferenceSession.create(model, options);
      return new Kernel(key, session, provider, keep, profile);
    } catch (e) {
      throw new ReasonedError('ort-session-failed', `onnxruntime could not create a ${provider} session for kernel "${key}": ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /** the memoised kernel for `key`, building its graph on first use */
  kernel(key: string, build: () => Graph | Uint8Array, options: KernelOptions = {}): Promise<Kernel> {
    const keep = options.keep ?? [];
    const memoKey = `${key}${keep.length > 0 ? `|keep:${keep.join(',')}` : ''}${options.host ? '|host' : ''}${options.spin === false ? '|sleep' : ''}${options.arena ? '|arena' : ''}${options.pattern === false ? '|no-pattern' : ''}`;
    let hit = this.#kernels.get(memoKey);
    if (!hit) {
      hit = (async () => {
        const g = build();
        return this.#create(key, g instanceof Uint8Array ? g : g.build(), keep, options);
      })();
      hit.catch(() => this.#kernels.delete(memoKey));
      this.#kernels.set(memoKey, hit);
    }
    return hit;
  }

  /** `t` as a Resident: copied into a device buffer on WebGPU (through an Identity kernel), wrapped (no copy) elsewhere */
  async upload(t: Tensor): Promise<Resident> {
    if (this.device !== 'webgpu') return new Resident(toOrt(t));
    const k = await this.kernel(`resident.upload:${t.dtype}:${t.dims.length}`, () => identity(t.dtype, t.dims.length), { keep: ['y'] });
    return (await k.runKeep({ x: t })).kept['y']!;
  }

  /** a Resident's data on the host (through an Identity kernel whose output lands there) */
  async download(r: Resident): Promise<Tensor> {
    const k = await this.kernel(`resident.download:${r.dtype}:${r.dims.length}`, () => identity(r.dtype, r.dims.length));
    return (await k.run({ x: r }))['y']!;
  }

  /** milliseconds spent inside onnxruntime by every kernel of this process so far */
  get busyMs(): number {
    return Kernel.busyMs;
  }

  /** a session over an ONNX file on disk (external data resolved relative to it); not memoised */
  load(path: string): Promise<Kernel> {
    return this.#create(path, path, []);
  }

  /** release the memoised kernels whose key starts with `prefix` (their sessions and arenas); the next use rebuilds them */
  async release(prefix: string): Promise<void> {
    for (const [memoKey, k] of [...this.#kernels]) {
      if (!memoKey.startsWith(prefix)) continue;
      this.#kernels.delete(memoKey);
      await (await k.catch(() => undefined))?.release();
    }
  }

  async close(): Promise<void> {
    for (const k of this.#kernels.values()) await (await k.catch(() => undefined))?.release();
    this.#kernels.clear();
  }
}

/** onnxruntime-node's version and the execution providers its build knows (bundled or downloaded at install) */
export function ortBuild(): { version: string; providers: { name: string; bundled: boolean }[] } {
  return { version: ort.env.versions.node ?? ort.env.versions.common, providers: ort.listSupportedBackends() };
}

function identity(dtype: DType, rank: number): Graph {
  const g = new Graph('identity');
  const x = g.input('x', dtype as OnnxDType, Array.from({ length: rank }, (_, i) => `d${i}`));
  g.output(g.op('Identity', [x]), 'y');
  return g;
}
