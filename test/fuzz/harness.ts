// Property-based fuzzing of quantforge's readers: each target turns a fast-check input into files, runs a
// reader on them and returns the outcome, 'ok' or the reason of the named error it ended in. Anything else (an
// unnamed error, a message without the file or over several lines, a stack overflow, console output) fails
// the property, and fast-check shrinks it to a minimal counterexample. CI runs FUZZ_RUNS cases per target with
// a fixed seed; bench/fuzz.ts runs 10,000 and prints the tallies.

import fc from 'fast-check';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { UsageError } from '../../src/commands/command.js';
import { InputError } from '../../src/diag/failure.js';

/** the seed CI uses (any fixed number: a failure must reproduce) */
export const FUZZ_SEED = Number(process.env['QUANTFORGE_FUZZ_SEED'] ?? 20_250_015);
/** a case that runs longer than this is a hang (fast-check fails it) */
export const CASE_TIMEOUT_MS = 20_000;
/** cases per target in CI */
export const FUZZ_RUNS = Number(process.env['QUANTFORGE_FUZZ_RUNS'] ?? 1000);

export interface FuzzTarget<T, C = unknown> {
  readonly name: string;
  /** what the inputs are, one line (for bench/fuzz.ts) */
  readonly description: string;
  readonly arbitrary: fc.Arbitrary<T>;
  /** shared state for all cases (a temp dir, a model written once); undone by `teardown` */
  setup(root: string): Promise<C>;
  /** one case: 'ok', or the reason of the named error it ended in; throws when the outcome is not acceptable */
  run(input: T, ctx: C): Promise<string>;
  teardown?(ctx: C): Promise<void>;
}

export interface FuzzReport {
  target: string;
  runs: number;
  seed: number;
  /** outcome ('ok' or an error reason) → cases */
  outcomes: Map<string, number>;
  /** the exit code `quantforge` gives each case's outcome (0 for 'ok'; see `exitCodeOf`) → cases */
  exits: Map<number, number>;
  seconds: number;
}

/** run `numRuns` cases of `target`; throws fast-check's report (seed, shrunk counterexample) on a failure */
export async function runFuzz<T, C>(target: FuzzTarget<T, C>, options: { seed?: number; numRuns?: number } = {}): Promise<FuzzReport> {
  const seed = options.seed ?? FUZZ_SEED;
  const numRuns = options.numRuns ?? FUZZ_RUNS;
  const root = await mkdtemp(join(tmpdir(), `qf-fuzz-${target.name}-`));
  const ctx = await target.setup(root);
  const outcomes = new Map<string, number>();
  const exits = new Map<number, number>();
  let runs = 0;
  const t0 = performance.now();
  const report = (): FuzzReport => ({ target: target.name, runs, seed, outcomes, exits, seconds: (performance.now() - t0) / 1000 });
  try {
    await fc.assert(
      fc.asyncProperty(target.arbitrary, async (input) => {
        runs++;
        caseExit = undefined;
        const outcome = await quietly(() => target.run(input, ctx));
        const exit = outcome === 'ok' ? 0 : caseExit;
        if (exit === undefined) throw new UnacceptableOutcome(`outcome ${outcome} came from no named error (namedReason) or recipe diagnostic (noteExit)`);
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        exits.set(exit, (exits.get(exit) ?? 0) + 1);
      }),
      { seed, numRuns, timeout: CASE_TIMEOUT_MS },
    );
  } catch (e) {
    throw new FuzzFailure(e, report());
  } finally {
    await target.teardown?.(ctx);
    await rm(root, { recursive: true, force: true });
  }
  return report();
}

/** a failed target: fast-check's report (seed, path, shrunk counterexample) and the tallies until then (shrinking included) */
export class FuzzFailure extends Error {
  readonly report: FuzzReport;
  constructor(cause: unknown, report: FuzzReport) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.name = 'FuzzFailure';
    this.report = report;
  }
}

/** the exit code of the case being run, set by `namedReason` (or `noteExit`) */
let caseExit: number | undefined;

/** the exit code `quantforge` gives an error it ends in (src/cli.ts): 2 for a malformed input or a usage error, 1 otherwise */
export function exitCodeOf(e: unknown): number {
  return e instanceof InputError || e instanceof UsageError ? 2 : 1;
}

/** record the exit code a case's named outcome gets when it comes from no thrown error (recipe diagnostics: 2) */
export function noteExit(code: number): void {
  caseExit = code;
}

/** one case of `target` on a given input (regression tests replay shrunk counterexamples through this) */
export async function runOnce<T, C>(target: FuzzTarget<T, C>, input: T): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), `qf-fuzz-${target.name}-`));
  const ctx = await target.setup(root);
  try {
    return await quietly(() => target.run(input, ctx));
  } finally {
    await target.teardown?.(ctx);
    await rm(root, { recursive: true, force: true });
  }
}

const CONSOLE = ['log', 'info', 'warn', 'error', 'debug'] as const;

/**
 * `run` with console output caught: a reader (or a library under it) that prints is unacceptable, since the
 * CLI would show the line beside, or instead of, the one naming the file (the outcome is kept otherwise)
 */
async function quietly(run: () => Promise<string>): Promise<string> {
  const printed: string[] = [];
  const saved = CONSOLE.map((m) => console[m]);
  for (const m of CONSOLE) console[m] = (...args: unknown[]) => void printed.push(`console.${m}: ${args.map((a) => (typeof a === 'string' ? a : inspect(a, { depth: 3 }))).join(' ')}`);
  let outcome: string;
  try {
    outcome = await run();
  } finally {
    CONSOLE.forEach((m, i) => (console[m] = saved[i]!));
  }
  if (printed.length > 0) throw new UnacceptableOutcome(`ended in ${outcome} but printed ${printed.length} line(s): ${printed[0]!.slice(0, 300)}`);
  return outcome;
}

export class UnacceptableOutcome extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UnacceptableOutcome';
  }
}

/**
 * The reason of `e` if it is a named error quantforge may end in: a kebab-case `reason`, a message on one line
 * that names `file` (its path or base name) and, when `field` is given, that field. Anything else is rethrown
 * as an UnacceptableOutcome carrying the original error.
 */
export function namedReason(e: unknown, file: string | readonly string[], field?: string): string {
  const files = typeof file === 'string' ? [file] : file;
  if (!(e instanceof Error)) throw new UnacceptableOutcome(`threw a non-Error: ${String(e).slice(0, 300)}`);
  const reason = (e as { reason?: unknown }).reason;
  const problems: string[] = [];
  if (typeof reason !== 'string' || !/^[a-z0-9]+(-[a-z0-9]+)*$/.test(reason)) problems.push(`no kebab-case reason (${String(reason)})`);
  if (!files.some((f) => e.message.includes(f))) problems.push(`the message does not name ${files.join(' or ')}`);
  if (field !== undefined && !e.message.includes(field)) problems.push(`the message does not name ${field}`);
  // a typed error that knows its field (InputError.field) must say it
  const own = (e as { field?: unknown }).field;
  if (typeof own === 'string' && !e.message.includes(own)) problems.push(`the message does not name its field ${own}`);
  if (e.message.includes('\n')) problems.push('the message spans several lines');
  if (e.message.length > 1000) problems.push(`the message has ${e.message.length} characters`);
  if (problems.length > 0) {
    const where = (e.stack ?? '').split('\n').filter((l) => l.trimStart().startsWith('at ')).slice(0, 8).join('\n');
    throw new UnacceptableOutcome(`${e.name}: ${problems.join('; ')}: ${e.message.slice(0, 300)}\n${where}`);
  }
  caseExit = exitCodeOf(e);
  return reason as string;
}

/** tally text: `ok 612, offsets-gap 120, …` sorted by count */
export function formatOutcomes(outcomes: ReadonlyMap<string, number>): string {
  return [...outcomes].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([k, n]) => `${k} ${n}`).join(', ');
}
