// The reliability tests and scripts (kills, concurrent runs, a full disk) run the real CLI, `node
// bin/quantforge.js run --json`, on GPTQ W4A16 of ../shared/models/stories260K with a few calibration and
// evaluation windows, in a workspace of their own: recipe.yaml, the text slices, the step store in cache/
// and the outputs in out/. Helpers here start runs, read their JSON events, fingerprint output directories
// and list what interrupted writes left behind.

import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { REPO, sharedData, sharedModel } from '../e2e/shared.js';

export const CLI = join(REPO, 'bin/quantforge.js');
/** the outputs of the workspace's recipe, relative to it (the report goes beside the first output) */
export const OUTPUT_DIRS = ['out/ct', 'out/onnx', 'out/recipe-report'] as const;

export interface Workspace {
  dir: string;
  recipe: string;
  /** the step store (--cache-dir) */
  cache: string;
}

export interface RunEvent {
  event: string;
  id?: string;
  result?: string;
  [k: string]: unknown;
}

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  events: RunEvent[];
  stderr: string;
  ms: number;
}

/** a recipe of its own in a new directory under `parent`; `gptq` is appended to the gptq stage's flow mapping (`, block_size: 64`) */
export async function makeWorkspace(parent = tmpdir(), prefix = 'qf-rel-', gptq = ''): Promise<Workspace> {
  const dir = await mkdtemp(join(parent, prefix));
  // first bytes of the shared texts: 8 calibration windows and 4 evaluation windows of 128 tokens
  await writeFile(join(dir, 'calib.txt'), readFileSync(sharedData('tinystories-calib.txt')).subarray(0, 60_000));
  await writeFile(join(dir, 'eval.txt'), readFileSync(sharedData('tinystories-eval.txt')).subarray(0, 30_000));
  await writeFile(
    join(dir, 'recipe.yaml'),
    [
      'quantforge: 1',
      `model: ${sharedModel('stories260K')}`,
      'calibration: { dataset: calib.txt, samples: 8, seq_len: 128 }',
      'stages:',
      `  - { kind: gptq, scheme: W4A16, ignore: [lm_head]${gptq} }`,
      'evaluate:',
      '  perplexity: { dataset: eval.txt, seq_len: 128, max_windows: 4 }',
      'outputs:',
      '  - { format: compressed-tensors, path: out/ct }',
      '  - { format: onnx, path: out/onnx }',
      '',
    ].join('\n'),
  );
  await mkdir(join(dir, 'out'), { recursive: true });
  return { dir, recipe: join(dir, 'recipe.yaml'), cache: join(dir, 'cache') };
}

export interface RunOptions {
  /** extra command-line arguments after the recipe */
  args?: string[];
  env?: Record<string, string>;
  /** told every JSON event as it arrives, with the child (to kill it at a moment of the caller's choosing) */
  onEvent?: (e: RunEvent, child: ChildProcess) => void;
  /** told once the child is started */
  onSpawn?: (child: ChildProcess) => void;
}

/** `quantforge run RECIPE --json` in the workspace */
export function runBuild(ws: Workspace, opts: RunOptions = {}): Promise<CliRun> {
  return runCli(ws, ['run', 'recipe.yaml', '--json', '--device', 'cpu', '--cache-dir', ws.cache, ...(opts.args ?? [])], opts);
}

/** any quantforge command in the workspace, its stdout read as JSON lines when it prints them */
export function runCli(ws: Workspace, argv: string[], opts: RunOptions = {}): Promise<CliRun> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [CLI, ...argv], { cwd: ws.dir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  opts.onSpawn?.(child);
  const events: RunEvent[] = [];
  let stderr = '';
  let buf = '';
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      let e: RunEvent;
      try {
        e = JSON.parse(line) as RunEvent;
      } catch {
        e = { event: 'text', text: line };
      }
      events.push(e);
      opts.onEvent?.(e, child);
    }
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, events, stderr, ms: performance.now() - t0 }));
  });
}

/** every file under `dir` by relative path → sha256; undefined when `dir` does not exist */
export async function fingerprint(dir: string): Promise<Map<string, string> | undefined> {
  if (!existsSync(dir)) return undefined;
  const out = new Map<string, string>();
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.set(relative(dir, p), createHash('sha256').update(await readFile(p)).digest('hex'));
    }
  };
  await walk(dir);
  return new Map([...out].sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** the fingerprints of every output directory of the workspace */
export async function outputFingerprints(ws: Workspace): Promise<Record<string, Map<string, string> | undefined>> {
  const out: Record<string, Map<string, string> | undefined> = {};
  for (const d of OUTPUT_DIRS) out[d] = await fingerprint(join(ws.dir, d));
  return out;
}

/** how two fingerprints differ, one line per file; [] when equal */
export function fingerprintDiff(want: Map<string, string> | undefined, got: Map<string, string> | undefined): string[] {
  if (!want || !got) return want === got ? [] : [got ? 'exists, expected nothing' : 'missing'];
  const names = new Set([...want.keys(), ...got.keys()]);
  return [...names].filter((n) => want.get(n) !== got.get(n)).map((n) => `${n}: ${got.has(n) ? (want.has(n) ? 'differs' : 'unexpected') : 'missing'}`);
}

/**
 * What interrupted writes left behind: anything in the store's temp area, temp files beside its
 * bookkeeping files, registrations and lock files, and staging or old copies beside the output directories.
 */
export async function leftovers(ws: Workspace): Promise<string[]> {
  const found: string[] = [];
  const names = async (d: string): Promise<string[]> => (existsSync(d) ? readdir(d) : []);
  for (const n of await names(join(ws.cache, 'tmp'))) found.push(`cache/tmp/${n}`);
  for (const sub of ['', 'history', 'locks', 'runs']) {
    for (const n of await names(join(ws.cache, sub))) {
      if (/\.tmp-\d+-[0-9a-f]{8}$/.test(n) || (sub === 'runs' && n.endsWith('.json')) || (sub === 'locks' && /\.lock(\.break)?$/.test(n))) found.push(join('cache', sub, n));
    }
  }
  for (const n of await names(join(ws.dir, 'out'))) if (/\.(tmp|old)-\d+-[0-9a-f]{8}$/.test(n)) found.push(`out/${n}`);
  return found;
}

/** the step ids whose step-done event says `result` */
export function stepsWith(events: readonly RunEvent[], result: 'ran' | 'cached'): string[] {
  return events.filter((e) => e.event === 'step-done' && e.result === result).map((e) => e.id!);
}
