// Can an execution provider run here? Asked of a child process: it creates a one-node session on the provider
// alone (no CPU fallback), runs it and checks the numbers. A child keeps the question safe (a broken GPU driver
// can abort a process, and Dawn prints its Vulkan complaints on stderr, which the child captures so the answer
// can name what is missing) and costs about a second on a software Vulkan device; answers are memoised per
// process, and across processes until something they depend on changes (probe-memo.ts).

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Device } from '../recipe/types.js';
import { Graph } from './graph.js';
import { probeFingerprint, probeMemoEnabled, recalled, remember } from './probe-memo.js';

/** an onnxruntime execution provider: a recipe `device` other than auto */
export type Provider = Exclude<Device, 'auto'>;

export interface ProviderCheck {
  provider: Provider;
  ok: boolean;
  /** one line: what answered (e.g. "a Vulkan adapter") or what is missing */
  detail: string;
  /** wall time of the probe, for `doctor` */
  ms: number;
}

/** Vulkan drivers that run on the CPU (Mesa lavapipe, SwiftShader): VK_LOADER_DRIVERS_DISABLE globs */
export const SOFTWARE_VULKAN_DRIVERS = ['*lvp*', '*swiftshader*'];

const PROBE_TIMEOUT_MS = 60_000;

/** onnxruntime-node's entry file, and the folder of its native libraries (where the CUDA provider would be) */
export function ortPaths(): { entry: string; binDir: string } | undefined {
  try {
    const req = createRequire(import.meta.url);
    const pkg = req.resolve('onnxruntime-node/package.json');
    return { entry: req.resolve('onnxruntime-node'), binDir: join(dirname(pkg), 'bin', 'napi-v6', process.platform, process.arch) };
  } catch {
    return undefined;
  }
}

/** true when the installed onnxruntime-node has the CUDA provider's library (downloaded at install time) */
export function cudaLibraryPresent(): boolean {
  const p = ortPaths();
  return p !== undefined && existsSync(join(p.binDir, 'libonnxruntime_providers_cuda.so'));
}

// the child: plain CommonJS, so it runs the same from TypeScript sources and from dist/
const CHILD = `
const ort = require(process.env.QF_PROBE_ORT);
(async () => {
  let out;
  try {
    const session = await ort.InferenceSession.create(Buffer.from(process.env.QF_PROBE_MODEL, 'base64'), {
      executionProviders: [process.env.QF_PROBE_EP], logSeverityLevel: 3,
      extra: { session: { disable_cpu_ep_fallback: '1' } },
    });
    const r = await session.run({ a: new ort.Tensor('float32', Float32Array.of(1, 2, 3), [3]) });
    const y = Array.from(r.y.data);
    out = y.join(',') === '1,4,9' ? { ok: true } : { ok: false, error: 'wrong result ' + y.join(',') };
  } catch (e) {
    out = { ok: false, error: String((e && e.message) || e) };
  }
  process.stdout.write(JSON.stringify(out));
  process.exit(0);
})();
`;

let probeModel: string | undefined;

function model(): string {
  if (!probeModel) {
    const g = new Graph('probe');
    const a = g.input('a', 'float32', [3]);
    g.output(g.mul(a, a), 'y');
    probeModel = Buffer.from(g.build()).toString('base64');
  }
  return probeModel;
}

interface ChildAnswer {
  ok: boolean;
  /** the child answered (a result, or the error its session gave): an answer worth remembering */
  answered?: boolean;
  error?: string;
  stderr: string;
  ms: number;
}

function runChild(provider: Provider, env: NodeJS.ProcessEnv): ChildAnswer {
  const paths = ortPaths();
  if (!paths) return { ok: false, error: 'onnxruntime-node is not installed', stderr: '', ms: 0 };
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ['-e', CHILD], {
    env: { ...env, QF_PROBE_ORT: paths.entry, QF_PROBE_EP: provider, QF_PROBE_MODEL: model() },
    encoding: 'utf8',
    timeout: PROBE_TIMEOUT_MS,
    maxBuffer: 1 << 22,
  });
  const ms = performance.now() - t0;
  const stderr = r.stderr ?? '';
  if (r.error) return { ok: false, error: r.error.message.includes('ETIMEDOUT') ? `the probe did not answer in ${PROBE_TIMEOUT_MS / 1000} s` : r.error.message, stderr, ms };
  try {
    const answer = JSON.parse(r.stdout) as { ok: boolean; error?: string };
    return { ...answer, answered: true, stderr, ms };
  } catch {
    const how = r.signal ? `killed by ${r.signal}` : `exit code ${r.status}`;
    return { ok: false, error: `the probe process died (${how})`, stderr, ms };
  }
}

/** the line of Dawn's or the Vulkan loader's stderr that says what went wrong, if any */
function vulkanComplaint(stderr: string): string | undefined {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  return lines.find((l) => /Found no drivers|Failed to detect any valid GPUs|required|libvulkan|vkCreateInstance failed/i.test(l) && !/artificially reduced/.test(l));
}

/** what is missing, in words, from a failed WebGPU probe */
export function explainWebgpuFailure(error: string, stderr: string, hardwareOnly = false): string {
  if (hardwareOnly && /Found no drivers|VK_ERROR_INCOMPATIBLE_DRIVER|Failed to detect any valid GPUs/.test(stderr)) {
    return 'no hardware Vulkan adapter (a software one is used only with --device webgpu)';
  }
  if (/Found no drivers|VK_ERROR_INCOMPATIBLE_DRIVER/.test(stderr)) {
    return 'no Vulkan adapter: the Vulkan loader found no driver (install your GPU\'s Vulkan driver, or mesa-vulkan-drivers ≥ 25 for the software device)';
  }
  if (/Failed to detect any valid GPUs/.test(stderr)) return 'no Vulkan adapter: the installed Vulkan drivers found no device';
  if (/libvulkan/i.test(stderr) || /libvulkan/i.test(error)) return 'no Vulkan loader (libvulkan.so.1): install libvulkan1 and a Vulkan driver';
  if (/ArrayDynamicIndexing|required/.test(stderr)) return `no usable Vulkan adapter: Dawn refused the driver (${vulkanComplaint(stderr)}); Mesa ≥ 25 works`;
  if (/No supported adapters/.test(error)) return `no WebGPU adapter${vulkanComplaint(stderr) ? ` (${vulkanComplaint(stderr)})` : ''}`;
  return error.split('\n')[0]!.trim();
}

/** what is missing, in words, from a failed CUDA probe */
export function explainCudaFailure(error: string, stderr: string): string {
  const missingLib = /error: ([^\s:]+\.so[.\d]*): cannot open shared object file/.exec(`${stderr}\n${error}`);
  if (missingLib) return `the CUDA provider cannot load ${missingLib[1]} (install CUDA 12 and cuDNN 9)`;
  if (/no CUDA-capable device|CUDA driver version is insufficient|cudaErrorNoDevice/i.test(`${stderr}\n${error}`)) return 'no usable CUDA GPU (driver or device missing)';
  return error.split('\n')[0]!.trim();
}

const memo = new Map<string, ProviderCheck>();

/**
 * Can `provider` run a session here? For webgpu, `hardwareOnly` hides the software Vulkan drivers from the
 * probe (through the Vulkan loader's VK_LOADER_DRIVERS_DISABLE), so it answers "is there a real GPU".
 */
export function checkProvider(provider: Provider, options: { hardwareOnly?: boolean; fresh?: boolean } = {}): ProviderCheck {
  const key = `${provider}:${options.hardwareOnly ? 'hw' : 'any'}`;
  const hit = options.fresh ? undefined : memo.get(key);
  if (hit) return hit;
  let check: ProviderCheck;
  if (provider === 'cpu') check = { provider, ok: true, detail: 'always available', ms: 0 };
  else if (provider === 'cuda' && !cudaLibraryPresent()) {
    check = { provider, ok: false, detail: 'onnxruntime-node has no CUDA provider (libonnxruntime_providers_cuda.so is downloaded at install time)', ms: 0 };
  } else check = childCheck(provider, key, options);
  memo.set(key, check);
  return check;
}

/** a child process's answer, or the one a child gave an earlier process under the same fingerprint (probe-memo.ts) */
function childCheck(provider: Provider, key: string, options: { hardwareOnly?: boolean; fresh?: boolean }): ProviderCheck {
  const fingerprint = probeMemoEnabled() ? probeFingerprint(ortPaths()) : undefined;
  const known = fingerprint && !options.fresh ? recalled(fingerprint, key) : undefined;
  if (known) return { provider, ...known, ms: 0 };
  const env = { ...process.env };
  if (provider === 'webgpu' && options.hardwareOnly) {
    env['VK_LOADER_DRIVERS_DISABLE'] = [env['VK_LOADER_DRIVERS_DISABLE'], ...SOFTWARE_VULKAN_DRIVERS].filter(Boolean).join(',');
  }
  const a = runChild(provider, env);
  const detail = a.ok
    ? provider === 'webgpu' ? (options.hardwareOnly ? 'a hardware Vulkan adapter' : 'a Vulkan adapter') : 'a CUDA device'
    : provider === 'webgpu' ? explainWebgpuFailure(a.error ?? '', a.stderr, options.hardwareOnly) : explainCudaFailure(a.error ?? '', a.stderr);
  // a probe that timed out or died says nothing lasting about the machine
  if (fingerprint && a.answered) remember(fingerprint, key, { ok: a.ok, detail });
  return { provider, ok: a.ok, detail, ms: a.ms };
}
