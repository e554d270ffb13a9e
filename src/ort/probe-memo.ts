// Provider probe answers (probe.ts) remembered across processes until the machine reboots or something a probe
// depends on changes. Without it every `quantforge run` with `device: auto`, a no-op rebuild included, starts a
// child process that loads onnxruntime and asks Vulkan for an adapter (a few hundred ms on a 2-core machine).
// An answer is reused only under the same fingerprint: the kernel's boot id, Node (path, version), the installed
// onnxruntime-node (entry, native library files by size and mtime), the environment variables GPU drivers and
// loaders read, the Vulkan driver manifests and the GPU device nodes. Without a boot id (not Linux), or with
// QUANTFORGE_PROBE_MEMO=0, every process probes, as before; `doctor` always probes. The memo keeps the answers of
// the last MEMO_FINGERPRINTS fingerprints, so installs that take turns on one machine (two checkouts, each with
// its own onnxruntime-node) do not make each other probe again.

import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';

/** what the memo keeps of an answer (the probe's wall time is not reused) */
export interface MemoAnswer {
  ok: boolean;
  detail: string;
}

interface MemoEntry {
  fingerprint: string;
  answers: Record<string, MemoAnswer>;
}

/** the entries, most recently written first */
interface MemoFile {
  entries: MemoEntry[];
}

/** how many fingerprints' answers the memo keeps */
export const MEMO_FINGERPRINTS = 8;

/** environment variables that can change what a provider finds (drivers, loaders, library paths) */
const DRIVER_ENV = /^(VK_|MESA_|DRI_|LIBGL_|GALLIUM_|CUDA_|NVIDIA_|ORT_|ONNXRUNTIME_|QF_PROBE_)|^(LD_LIBRARY_PATH|LD_PRELOAD|XDG_RUNTIME_DIR|XDG_DATA_DIRS|XDG_CONFIG_DIRS|HOME)$/;

function listing(dir: string, filter: (name: string) => boolean = () => true): string[] {
  let names: string[];
  try {
    names = readdirSync(dir).filter(filter).sort();
  } catch {
    return [];
  }
  return names.map((n) => {
    try {
      const s = statSync(join(dir, n));
      return `${n}:${s.size}:${s.mtimeMs}`;
    } catch {
      return n;
    }
  });
}

/** the fingerprint of everything a probe's answer depends on; undefined where there is no boot id */
export function probeFingerprint(ort: { entry: string; binDir: string } | undefined): string | undefined {
  let boot: string;
  try {
    boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return undefined;
  }
  const env = process.env;
  const dataDirs = (env['XDG_DATA_DIRS'] ?? '/usr/local/share:/usr/share').split(':').filter(Boolean);
  const configDirs = (env['XDG_CONFIG_DIRS'] ?? '/etc/xdg').split(':').filter(Boolean);
  const icdDirs = [...new Set(['/etc/vulkan', '/usr/share/vulkan', '/usr/local/share/vulkan', join(homedir(), '.local/share/vulkan'), ...dataDirs.map((d) => join(d, 'vulkan')), ...configDirs.map((d) => join(d, 'vulkan'))])];
  const parts = {
    boot,
    node: [process.execPath, process.version],
    ort: ort ? [ort.entry, listing(ort.binDir)] : null,
    env: Object.entries(env).filter(([k]) => DRIVER_ENV.test(k)).sort(([a], [b]) => (a < b ? -1 : 1)),
    vulkan: icdDirs.map((d) => [d, listing(join(d, 'icd.d'))]),
    devices: [listing('/dev/dri'), listing('/dev', (n) => n.startsWith('nvidia'))],
  };
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex');
}

function memoFile(): string {
  const uid = process.getuid?.() ?? 'user';
  return join(tmpdir(), `quantforge-${uid}`, 'provider-probes.json');
}

const isEntry = (e: unknown): e is MemoEntry => {
  const m = e as Partial<MemoEntry> | null;
  return typeof m === 'object' && m !== null && typeof m.fingerprint === 'string' && typeof m.answers === 'object' && m.answers !== null;
};

/** the memo's entries; a missing or damaged file has none (probe again) */
function read(): MemoEntry[] {
  try {
    const m = JSON.parse(readFileSync(memoFile(), 'utf8')) as Partial<MemoFile> | null;
    return Array.isArray(m?.entries) ? m.entries.filter(isEntry) : [];
  } catch {
    return [];
  }
}

/** the remembered answer to `key` under this fingerprint */
export function recalled(fingerprint: string, key: string): MemoAnswer | undefined {
  const a = read().find((e) => e.fingerprint === fingerprint)?.answers[key];
  return a && typeof a.ok === 'boolean' && typeof a.detail === 'string' ? { ok: a.ok, detail: a.detail } : undefined;
}

/** remember an answer (temp file + rename; a memo that cannot be written only costs the next run a probe) */
export function remember(fingerprint: string, key: string, answer: MemoAnswer): void {
  const file = memoFile();
  const entries = read();
  const mine = entries.find((e) => e.fingerprint === fingerprint) ?? { fingerprint, answers: {} };
  mine.answers[key] = answer;
  const m: MemoFile = { entries: [mine, ...entries.filter((e) => e !== mine)].slice(0, MEMO_FINGERPRINTS) };
  try {
    mkdirSync(join(file, '..'), { recursive: true, mode: 0o700 });
    const tmp = `${file}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify(m));
    renameSync(tmp, file);
  } catch {
    // the memo only saves time
  }
}

/** whether probes may be remembered (QUANTFORGE_PROBE_MEMO=0 turns it off) */
export function probeMemoEnabled(): boolean {
  return process.env['QUANTFORGE_PROBE_MEMO'] !== '0';
}
