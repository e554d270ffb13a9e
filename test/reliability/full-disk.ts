// A full disk (issue 15, part 5): the step store and the outputs on a small tmpfs. Build A (GPTQ W4A16 on
// stories260K) succeeds; then, for each level, a filler file leaves only a fraction of what build B (another
// dampening_frac: new GPTQ layers, checkpoint, export, evaluations, report) needs, and B runs. A run that
// runs out of space must exit 1 saying "no space left on <path>", leave no partial entry (nothing in the
// store's temp area, every entry sound) and leave A's output directories intact and loadable (`quantforge
// eval` on the checkpoint); every output directory is always A's or a complete one of B's. At the end, with
// the filler gone, B completes, `cache verify` is clean and `cache gc` leaves nothing behind.
// Mounting needs root (CI runs as root); elsewhere the callers skip, saying why.

import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmdirSync, statfsSync } from 'node:fs';
import { mkdtemp, open, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DirStore } from '../../src/cache/dir-store.js';
import { fingerprint, fingerprintDiff, leftovers, makeWorkspace, OUTPUT_DIRS, runBuild, runCli, type Workspace } from './workspace.js';

/** build B: the same recipe with another dampening fraction */
const B = ['--set', 'stages[0].dampening_frac=0.05'];
/** room for what a run writes besides entries and outputs: its registration, lock files, digests, history */
const SLACK = 128 << 10;

export interface DiskRun {
  /** free space when B started, as a fraction of what B needs (its new entries and its outputs) */
  level: number;
  freeBytes: number;
  code: number | null;
  /** where it ran out: 'start' (registering the run), the step that failed, 'outputs', or '' when it completed */
  where: string;
  message: string;
  /** `quantforge eval` of A's checkpoint after a failure: its perplexity */
  evalPerplexity?: number;
  /** what each output directory held after the run: 'A' (the previous one), 'B' (a complete new one), '?' otherwise */
  held: Record<string, 'A' | 'B' | '?'>;
}

export interface DiskReport {
  runs: DiskRun[];
  problems: string[];
  final: { code: number | null; damaged: number; leftovers: string[] };
}

export type Mount = { dir: string; unmount: () => void } | { reason: string };

/** mount a tmpfs of `bytes` on a new directory; the reason it cannot, when it cannot */
export function mountTmpfs(bytes: number): Mount {
  if (process.getuid?.() !== 0) return { reason: 'mounting a tmpfs needs root (CI runs as root)' };
  const dir = mkdtempSync(join(tmpdir(), 'qf-disk-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (e) {
    rmdirSync(dir);
    return { reason: `mount -t tmpfs -o size=${bytes} failed: ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}` };
  }
  return {
    dir,
    unmount: () => {
      execFileSync('umount', [dir]);
      rmdirSync(dir);
    },
  };
}

/** `levels`: free space as fractions of B's need; 'outputs' aims at the outputs (B's entries fit, its first output does not) */
export async function fullDiskCampaign(mount: string, levels: readonly (number | 'outputs')[]): Promise<DiskReport> {
  const ws = await makeWorkspace(mount, 'ws-');
  const problems: string[] = [];
  const a = await runBuild(ws);
  if (a.code !== 0) throw new Error(`build A failed on the tmpfs: ${a.stderr}`);
  const backup = await mkdtemp(join(tmpdir(), 'qf-disk-outputs-'));
  try {
    for (const d of OUTPUT_DIRS) cpSync(join(ws.dir, d), join(backup, d), { recursive: true });
    const aOutputs = new Map(await Promise.all(OUTPUT_DIRS.map(async (d) => [d, await fingerprint(join(ws.dir, d))] as const)));
    const aEntries = new Set((await new DirStore(ws.cache).list()).map((e) => e.dir));
    const need = await needOfB(ws);
    const runs: DiskRun[] = [];
    /** the new output directories runs left, checked against B's once B completes */
    const newOutputs: { label: string; dir: string; got: Map<string, string> }[] = [];
    for (const level of levels) {
      // each level starts from A's store and outputs
      for (const e of await new DirStore(ws.cache).list()) if (!aEntries.has(e.dir)) await rm(e.dir, { recursive: true, force: true });
      for (const d of OUTPUT_DIRS) {
        await rm(join(ws.dir, d), { recursive: true, force: true });
        cpSync(join(backup, d), join(ws.dir, d), { recursive: true });
      }
      const target = level === 'outputs' ? need.steps + SLACK + need.firstOutput / 2 : Math.round(level * (need.steps + need.outputs));
      const freeBytes = await fill(mount, target);
      const run = await runBuild(ws, { args: B });
      const failed = run.events.find((e) => e.event === 'step-failed');
      const message = failed ? String(failed['message']) : run.stderr.trim().split('\n').pop() ?? '';
      const started = run.events.some((e) => e.event === 'plan');
      const where = run.code === 0 ? '' : failed ? String(failed.id) : started ? 'outputs' : 'start';
      const r: DiskRun = { level: level === 'outputs' ? (need.steps + SLACK + need.firstOutput / 2) / (need.steps + need.outputs) : level, freeBytes, code: run.code, where, message, held: {} };
      const label = `free ${(freeBytes / 1024).toFixed(0)} KiB`;
      await rm(join(mount, 'filler'), { force: true });
      if (run.code !== 0) {
        if (run.code !== 1) problems.push(`${label}: exit ${run.code ?? run.signal}, expected 1: ${run.stderr.trim()}`);
        if (!new RegExp(`no space left on ${mount}/`).test(`${message}\n${run.stderr}`)) problems.push(`${label}: no "no space left on <path>": ${run.stderr.trim()}`);
        const ev = await runCli(ws, ['eval', '--model', 'out/ct', '--dataset', 'eval.txt', '--seq-len', '128', '--max-windows', '4', '--json', '--device', 'cpu']);
        const ppl = Number((ev.events[0] as { perplexity?: number } | undefined)?.perplexity);
        if (ev.code !== 0 || !Number.isFinite(ppl)) problems.push(`${label}: eval of the previous checkpoint failed: ${ev.stderr.trim()}`);
        else r.evalPerplexity = ppl;
      }
      if (level === 'outputs' && where !== 'outputs') problems.push(`${label}: aimed at the outputs, ran out at ${where || 'nothing'}`);
      const after = await checkAfter(ws, aOutputs);
      problems.push(...after.problems.map((p) => `${label}: ${p}`));
      for (const [d, got] of after.fresh) newOutputs.push({ label, dir: d, got });
      r.held = Object.fromEntries(OUTPUT_DIRS.map((d) => [d, after.fresh.has(d) ? 'B' : after.problems.some((p) => p.startsWith(d)) ? '?' : 'A']));
      runs.push(r);
    }
    const last = await runBuild(ws, { args: B });
    if (last.code !== 0) problems.push(`B with room again exited ${last.code}: ${last.stderr.trim()}`);
    // every new output directory a run that ran out of space left in place is byte-identical to B's
    for (const n of newOutputs) {
      const diff = fingerprintDiff(await fingerprint(join(ws.dir, n.dir)), n.got);
      if (diff.length > 0) problems.push(`${n.label}: ${n.dir} was replaced by a directory unlike B's: ${diff.slice(0, 3).join('; ')}`);
    }
    const verify = await runCli(ws, ['cache', 'verify', '--json', '--cache-dir', ws.cache]);
    const damaged = ((verify.events[0] as { damaged?: unknown[] } | undefined)?.damaged ?? []).length;
    await runCli(ws, ['cache', 'gc', '--cache-dir', ws.cache]);
    const left = await leftovers(ws);
    if (verify.code !== 0 || damaged > 0) problems.push(`cache verify at the end: exit ${verify.code}, ${damaged} damaged`);
    if (left.length > 0) problems.push(`left behind after cache gc: ${left.join(', ')}`);
    return { runs, problems, final: { code: last.code, damaged, leftovers: left } };
  } finally {
    await rm(backup, { recursive: true, force: true });
    await rm(ws.dir, { recursive: true, force: true });
  }
}

/** no partial entry, and every output directory A's or complete; `fresh`: the directories that are not A's, with their fingerprints */
async function checkAfter(ws: Workspace, aOutputs: ReadonlyMap<string, Map<string, string> | undefined>): Promise<{ problems: string[]; fresh: Map<string, Map<string, string>> }> {
  const problems: string[] = [];
  const fresh = new Map<string, Map<string, string>>();
  const tmp = join(ws.cache, 'tmp');
  if (existsSync(tmp) && (await readdir(tmp)).length > 0) problems.push(`the store's temp area holds ${(await readdir(tmp)).join(', ')}`);
  for (const b of (await new DirStore(ws.cache).verifyAll()).damaged) problems.push(`damaged entry ${b.kind}/${b.key.slice(0, 12)}: ${b.problem}`);
  for (const d of OUTPUT_DIRS) {
    const got = await fingerprint(join(ws.dir, d));
    if (fingerprintDiff(aOutputs.get(d), got).length === 0) continue;
    const names = (m: Map<string, string> | undefined): string => [...(m?.keys() ?? [])].join(',');
    if (!got || names(got) !== names(aOutputs.get(d))) problems.push(`${d} is neither the previous directory nor a complete new one`);
    else {
      JSON.parse(readFileSync(join(ws.dir, d, 'quantforge.lock.json'), 'utf8'));
      fresh.set(d, got);
    }
  }
  for (const n of await readdir(join(ws.dir, 'out'))) if (/\.(tmp|old)-\d+-/.test(n)) problems.push(`out/${n} left beside the outputs`);
  return { problems, fresh };
}

/** bytes B's new entries and outputs take: A's entries of the steps B runs (same shapes, same sizes) and A's outputs */
async function needOfB(ws: Workspace): Promise<{ steps: number; outputs: number; firstOutput: number }> {
  const plan = await runCli(ws, ['plan', 'recipe.yaml', '--json', '--cache-dir', ws.cache, ...B]);
  const runIds = new Set(((plan.events.find((e) => e.event === 'plan')?.['steps'] ?? []) as { id: string; state: string }[]).filter((s) => s.state === 'run').map((s) => s.id));
  let steps = 0;
  for (const e of await new DirStore(ws.cache).list()) if (runIds.has(e.meta.stepId)) steps += await allocated(e.dir);
  const sizes = await Promise.all(OUTPUT_DIRS.map((d) => allocated(join(ws.dir, d))));
  return { steps, outputs: sizes.reduce((s, x) => s + x, 0), firstOutput: sizes[0]! };
}

/** bytes the files under `dir` occupy (whole pages on tmpfs) */
async function allocated(dir: string): Promise<number> {
  let bytes = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) bytes += (await stat(join(e.parentPath, e.name))).blocks * 512;
  }
  return bytes;
}

/** write a filler file so that `free` bytes stay available; returns what is available */
async function fill(mount: string, free: number): Promise<number> {
  const available = (): number => {
    const s = statfsSync(mount);
    return s.bavail * s.bsize;
  };
  const handle = await open(join(mount, 'filler'), 'w');
  try {
    const chunk = Buffer.alloc(1 << 20, 1);
    for (let left = available() - free; left > 0; left -= chunk.length) {
      await handle.write(chunk, 0, Math.min(chunk.length, left));
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
  } finally {
    await handle.close();
  }
  return available();
}
