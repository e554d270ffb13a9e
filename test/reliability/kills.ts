// Random kills (issue 15, part 3): GPTQ W4A16 on stories260K through the real CLI, SIGKILLed at seeded
// moments and rerun after each, until `kills` runs have died. The moments cover a run's phases: a seeded
// time into the run, during tokenize/embed, in the middle of a step, inside a commit (the n-th write or
// rename of a pending entry, just before or after it: kill-switch.mjs) and while the outputs are written
// (the n-th file operation under out/ or on the history). After every kill each output directory is absent
// or byte-identical to an undisturbed run's, and every entry of the store is sound; at the end a rerun
// completes with identical outputs, `cache verify` finds nothing damaged, and after `cache gc` nothing that
// an interrupted write left is there. Used by test/reliability/kills.test.ts (5 kills) and bench/kills.ts.

import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DirStore } from '../../src/cache/dir-store.js';
import { seededRandom } from '../../src/random.js';
import {
  fingerprintDiff,
  leftovers,
  makeWorkspace,
  OUTPUT_DIRS,
  outputFingerprints,
  runBuild,
  runCli,
  type CliRun,
  type RunEvent,
  type RunOptions,
  type Workspace,
} from './workspace.js';

export const MOMENTS = ['time', 'tokenize/embed', 'mid-step', 'commit', 'output'] as const;
export type MomentKind = (typeof MOMENTS)[number];

export interface Kill {
  kind: MomentKind;
  /** what the moment was: `stage1.gptq/layer.2 + 31 ms`, `commit op 7 (before)` … */
  moment: string;
  /** the last step started before the process died */
  lastStep: string | undefined;
}

export interface KillReport {
  seed: number;
  kills: Kill[];
  /** runs whose moment never came (the work it aimed at was already done): they completed */
  missed: number;
  /** runs in all, killed or not, the final one included */
  runs: number;
  /** problems found; [] when nothing was lost */
  problems: string[];
  /** after the last kill: the rerun's outputs, `cache verify`, leftovers after `cache gc` */
  final: { identical: boolean; verified: number; damaged: number; leftovers: string[] };
}

interface Reference {
  outputs: Awaited<ReturnType<typeof outputFingerprints>>;
  /** step id → duration in the undisturbed run (ms) */
  stepMs: Map<string, number>;
  /** ms from the start of the process to its first step */
  startupMs: number;
  /** main-thread file operations of one commit, and of writing every output */
  commitOps: number;
  outputOps: number;
}

const KILL_SWITCH = pathToFileURL(join(import.meta.dirname, 'kill-switch.mjs')).href;
const COMMIT_OPS = ['writeFile', 'rename'];
const OUTPUT_OPS = ['copyFile', 'writeFile', 'rename', 'rm', 'mkdir'];

/** run the campaign in a fresh workspace under `parent`; `log` is told each run as it ends */
export async function killCampaign(opts: { kills: number; seed: number; parent?: string; log?: (line: string) => void }): Promise<KillReport> {
  const ws = await makeWorkspace(opts.parent, 'qf-kills-');
  try {
    return await new Campaign(ws, opts.seed, opts.log ?? (() => {})).run(opts.kills);
  } finally {
    await rm(ws.dir, { recursive: true, force: true });
  }
}

class Campaign {
  readonly #ws: Workspace;
  readonly #seed: number;
  readonly #random: () => number;
  readonly #log: (line: string) => void;
  readonly #problems: string[] = [];
  /** steps whose step-done was seen since the store was last emptied */
  readonly #done = new Set<string>();
  #ref!: Reference;
  #runs = 0;

  constructor(ws: Workspace, seed: number, log: (line: string) => void) {
    this.#ws = ws;
    this.#seed = seed;
    this.#random = seededRandom(seed);
    this.#log = log;
  }

  async run(target: number): Promise<KillReport> {
    this.#ref = await this.#reference();
    const kills: Kill[] = [];
    let missed = 0;
    for (let i = 0; kills.length < target; i++) {
      if (missed > target + 5) throw new Error(`${missed} moments missed: the campaign cannot land its kills`);
      const kind = MOMENTS[i % MOMENTS.length]!;
      if (!this.#applicable(kind)) await this.#reset();
      const { env, moment, arm } = this.#moment(kind);
      let lastStep: string | undefined;
      const run = await this.#build(env, {
        onSpawn: (child) => arm?.({ event: 'spawn' }, () => child.kill('SIGKILL')),
        onEvent: (e, child) => {
          if (e.event === 'step-start') lastStep = e.id;
          arm?.(e, () => child.kill('SIGKILL'));
        },
      });
      if (run.signal === 'SIGKILL') {
        kills.push({ kind, moment, lastStep });
        this.#log(`kill ${kills.length}: ${kind} at ${moment} (last step started: ${lastStep ?? 'none'})`);
        await this.#checkAfterKill(`kill ${kills.length}`);
      } else {
        missed++;
        this.#log(`missed: ${kind} at ${moment}; the run completed`);
        await this.#checkCompleted(run, `run ${this.#runs}`);
        await this.#reset();
      }
    }
    const last = await this.#build({});
    const identical = await this.#checkCompleted(last, 'final rerun');
    const verify = await runCli(this.#ws, ['cache', 'verify', '--json', '--cache-dir', this.#ws.cache]);
    const verified = (verify.events[0] ?? {}) as { entries?: number; damaged?: unknown[] };
    if (verify.code !== 0) this.#problems.push(`cache verify exited ${verify.code}: ${verify.stderr.trim()}`);
    const gc = await runCli(this.#ws, ['cache', 'gc', '--cache-dir', this.#ws.cache]);
    if (gc.code !== 0) this.#problems.push(`cache gc exited ${gc.code}: ${gc.stderr.trim()}`);
    const left = await leftovers(this.#ws);
    if (left.length > 0) this.#problems.push(`left behind after cache gc: ${left.join(', ')}`);
    return {
      seed: this.#seed,
      kills,
      missed,
      runs: this.#runs,
      problems: this.#problems,
      final: { identical, verified: Number(verified.entries ?? 0), damaged: (verified.damaged ?? []).length, leftovers: left },
    };
  }

  /** an undisturbed run with the file operations traced, then an empty store and no outputs again */
  async #reference(): Promise<Reference> {
    const traceFile = join(this.#ws.dir, 'fs-trace.jsonl');
    const t0 = performance.now();
    let first: number | undefined;
    const starts = new Map<string, number>();
    const stepMs = new Map<string, number>();
    const run = await this.#build(
      { QF_FS_TRACE: traceFile },
      {
        onEvent: (e) => {
          const now = performance.now();
          if (e.event === 'step-start') {
            first ??= now - t0;
            starts.set(e.id!, now);
          }
          if (e.event === 'step-done' && starts.has(e.id!)) stepMs.set(e.id!, now - starts.get(e.id!)!);
        },
      },
    );
    if (run.code !== 0) throw new Error(`the undisturbed run failed (exit ${run.code}): ${run.stderr}`);
    const ops = (await readFile(traceFile, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { op: string; paths: string[] });
    const count = (names: readonly string[], pattern: RegExp): number => ops.filter((o) => names.includes(o.op) && o.paths.some((p) => pattern.test(p))).length;
    const ref: Reference = {
      outputs: await outputFingerprints(this.#ws),
      stepMs,
      startupMs: first ?? 0,
      commitOps: count(COMMIT_OPS, this.#commitPattern()) / Math.max(1, stepMs.size),
      outputOps: count(OUTPUT_OPS, this.#outputPattern()),
    };
    await rm(traceFile, { force: true });
    await this.#reset();
    return ref;
  }

  #applicable(kind: MomentKind): boolean {
    const left = [...this.#ref.stepMs.keys()].filter((id) => !this.#done.has(id));
    if (kind === 'tokenize/embed') return left.some(isEarly);
    if (kind === 'mid-step') return left.some((id) => !isEarly(id));
    if (kind === 'commit' || kind === 'time') return left.length > 0;
    return OUTPUT_DIRS.some((d) => !existsSync(join(this.#ws.dir, d)));
  }

  /** the kill-switch environment or the event hook that makes the moment, and its description */
  #moment(kind: MomentKind): { env: Record<string, string>; moment: string; arm?: (e: RunEvent, kill: () => void) => void } {
    const left = [...this.#ref.stepMs.keys()].filter((id) => !this.#done.has(id));
    if (kind === 'time') {
      // from the start of the process: startup (plan, model checks) and the steps still to run
      const remaining = left.reduce((s, id) => s + this.#ref.stepMs.get(id)!, 0);
      const ms = Math.round(this.#random() * (this.#ref.startupMs + remaining));
      return { env: {}, moment: `${ms} ms after the start`, arm: (e, kill) => e.event === 'spawn' && setTimeout(kill, ms) };
    }
    if (kind === 'tokenize/embed' || kind === 'mid-step') {
      const pool = left.filter((id) => (kind === 'tokenize/embed') === isEarly(id));
      const step = pool[Math.floor(this.#random() * pool.length)]!;
      const ms = Math.round(this.#random() * this.#ref.stepMs.get(step)!);
      return { env: {}, moment: `${step} + ${ms} ms`, arm: (e, kill) => e.event === 'step-start' && e.id === step && setTimeout(kill, ms) };
    }
    const commit = kind === 'commit';
    const span = commit ? Math.round(left.length * this.#ref.commitOps) : this.#ref.outputOps;
    const nth = 1 + Math.floor(this.#random() * Math.max(1, span));
    const when = this.#random() < 0.5 ? 'before' : 'after';
    const spec = { ops: commit ? COMMIT_OPS : OUTPUT_OPS, path: (commit ? this.#commitPattern() : this.#outputPattern()).source, nth, when };
    return { env: { QF_KILL_SWITCH: JSON.stringify(spec) }, moment: `${kind} file operation ${nth} of ${span} (${when} it)` };
  }

  async #build(env: Record<string, string>, hooks: Pick<RunOptions, 'onEvent' | 'onSpawn'> = {}): Promise<CliRun> {
    this.#runs++;
    const preload = `${process.env['NODE_OPTIONS'] ?? ''} --import ${KILL_SWITCH}`.trim();
    const run = await runBuild(this.#ws, { env: { ...env, NODE_OPTIONS: preload }, ...hooks });
    for (const e of run.events) if (e.event === 'step-done') this.#done.add(e.id!);
    return run;
  }

  /** each output directory absent or complete and identical, every store entry sound */
  async #checkAfterKill(label: string): Promise<void> {
    const outputs = await outputFingerprints(this.#ws);
    for (const d of OUTPUT_DIRS) {
      if (outputs[d] === undefined) continue;
      const diff = fingerprintDiff(this.#ref.outputs[d], outputs[d]);
      if (diff.length > 0) this.#problems.push(`${label}: ${d} is half-written: ${diff.slice(0, 3).join('; ')}`);
    }
    const report = await new DirStore(this.#ws.cache).verifyAll();
    for (const b of report.damaged) this.#problems.push(`${label}: damaged entry ${b.kind}/${b.key.slice(0, 12)}: ${b.problem}`);
  }

  /** a completed run: exit 0 and every output identical to the undisturbed run's */
  async #checkCompleted(run: CliRun, label: string): Promise<boolean> {
    if (run.code !== 0) {
      this.#problems.push(`${label} exited ${run.code ?? run.signal}: ${run.stderr.trim().split('\n').slice(-3).join(' | ')}`);
      return false;
    }
    const outputs = await outputFingerprints(this.#ws);
    const diffs = OUTPUT_DIRS.flatMap((d) => fingerprintDiff(this.#ref.outputs[d], outputs[d]).map((x) => `${d}/${x}`));
    if (diffs.length > 0) this.#problems.push(`${label}: outputs differ from the undisturbed run: ${diffs.slice(0, 5).join('; ')}`);
    return diffs.length === 0;
  }

  /** an empty store and no outputs: the next run has everything to do again */
  async #reset(): Promise<void> {
    await rm(this.#ws.cache, { recursive: true, force: true });
    for (const d of OUTPUT_DIRS) await rm(join(this.#ws.dir, d), { recursive: true, force: true });
    this.#done.clear();
  }

  #commitPattern(): RegExp {
    return new RegExp(`^${escape(join(this.#ws.cache, 'tmp'))}/pending-`);
  }

  #outputPattern(): RegExp {
    return new RegExp(`^(${escape(join(this.#ws.dir, 'out'))}/|${escape(join(this.#ws.cache, 'history'))}/)`);
  }
}

function isEarly(id: string): boolean {
  return id.startsWith('tokenize/') || id.startsWith('embed/');
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
