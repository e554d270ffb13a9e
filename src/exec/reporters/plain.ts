// The reporter for logs (CI, pipes, non-TTY): one line per step start, finish or failure, progress lines
// throttled, warnings, outputs and a closing summary line. No ANSI escapes unless asked for. The line
// formats are exported for the listr reporter's closing lines.

import type { Writable } from 'node:stream';
import type { Json } from '../../cache/key.js';
import type { PlannedStep, Reporter, RunEvent } from '../events.js';
import { formatPosition } from '../../diag/print.js';

export interface PlainReporterOptions {
  stream: Writable;
  /** ANSI colours (only for a TTY that asked for plain output); default false */
  color?: boolean;
  /** clock for progress throttling; tests pass a fake one */
  now?: () => number;
  /** a step's progress is printed at most this often between its 25/50/75% marks; default 2000 */
  progressIntervalMs?: number;
}

type Style = 'green' | 'red' | 'yellow' | 'dim' | 'bold';
const ANSI: Record<Style, [number, number]> = { green: [32, 39], red: [31, 39], yellow: [33, 39], dim: [2, 22], bold: [1, 22] };

/** how many plan lines name a step and why it runs */
const PLAN_REASONS_SHOWN = 10;

interface ProgressState {
  lastPrintAt: number;
  lastQuarter: number;
}

export class PlainReporter implements Reporter {
  readonly #stream: Writable;
  readonly #color: boolean;
  readonly #now: () => number;
  readonly #interval: number;
  readonly #progress = new Map<string, ProgressState>();
  #planned: number | undefined;

  constructor(opts: PlainReporterOptions) {
    this.#stream = opts.stream;
    this.#color = opts.color ?? false;
    this.#now = opts.now ?? Date.now;
    this.#interval = opts.progressIntervalMs ?? 2000;
  }

  onEvent(e: RunEvent): void {
    for (const line of this.#render(e)) this.#stream.write(`${line}\n`);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#stream.write('', () => resolve()));
  }

  #render(e: RunEvent): string[] {
    const c = (style: Style, text: string) => (this.#color ? `\x1b[${ANSI[style][0]}m${text}\x1b[${ANSI[style][1]}m` : text);
    switch (e.event) {
      case 'plan':
        this.#planned = e.steps.length;
        return planLines(e.steps);
      case 'step-start':
        this.#progress.set(e.id, { lastPrintAt: this.#now(), lastQuarter: 0 });
        return [`start  ${e.id}`];
      case 'step-progress':
        return this.#shouldPrint(e.id, e.done, e.total) ? [`       ${e.id} ${progressText(e.done, e.total, e.message)}`] : [];
      case 'step-done':
        this.#progress.delete(e.id);
        return e.result === 'cached'
          ? [c('dim', `cached ${e.id}`)]
          : [`${c('green', 'done')}   ${e.id} in ${formatMs(e.ms)}${metricsSuffix(e.metrics)}`];
      case 'step-failed':
        this.#progress.delete(e.id);
        return [`${c('red', 'FAILED')} ${e.id} (${e.reason}): ${e.message}`, ...(e.location ? [`       at ${formatPosition(e.location)}`] : [])];
      case 'log':
        return [e.level === 'warn' ? `${c('yellow', 'warning:')} ${logText(e.message, e.id)}` : logText(e.message, e.id)];
      case 'output':
        return [outputLine(e)];
      case 'summary':
        return summaryLines(e, this.#planned).map((l, i) => (i === 0 ? c('bold', l) : l));
    }
  }

  /** at each 25/50/75% mark, and otherwise at most once per interval */
  #shouldPrint(id: string, done: number, total: number): boolean {
    const now = this.#now();
    const state = this.#progress.get(id) ?? { lastPrintAt: now, lastQuarter: 0 };
    this.#progress.set(id, state);
    if (total <= 0 || done >= total) return false;
    const quarter = Math.min(3, Math.floor((4 * done) / total));
    const due = quarter > state.lastQuarter || now - state.lastPrintAt >= this.#interval;
    if (!due) return false;
    state.lastQuarter = Math.max(state.lastQuarter, quarter);
    state.lastPrintAt = now;
    return true;
  }
}

/** `plan: 12 steps, 3 to run, 9 fresh` and why the first few steps run (except brand-new ones) */
export function planLines(steps: readonly PlannedStep[]): string[] {
  const toRun = steps.filter((s) => s.state === 'run');
  const lines = [`plan: ${plural(steps.length, 'step')}, ${toRun.length} to run, ${steps.length - toRun.length} fresh`];
  const explained = toRun.filter((s) => s.reason !== undefined && s.reason !== 'new');
  for (const s of explained.slice(0, PLAN_REASONS_SHOWN)) lines.push(`  ${s.id}: ${s.reason}`);
  if (explained.length > PLAN_REASONS_SHOWN) lines.push(`  ... and ${explained.length - PLAN_REASONS_SHOWN} more changed steps`);
  return lines;
}

/** `50% (16/32) message` */
export function progressText(done: number, total: number, message?: string): string {
  const pct = total > 0 ? Math.floor((100 * done) / total) : 0;
  return `${pct}% (${done}/${total})${message ? ` ${message}` : ''}`;
}

/** the summary line, `12 steps: 3 ran, 9 cached, 0 failed in 4.2 s`, then outputs and metrics */
export function summaryLines(s: Extract<RunEvent, { event: 'summary' }>, planned?: number): string[] {
  const total = planned ?? s.ran + s.cached + s.failed;
  const lines = [`${plural(total, 'step')}: ${s.ran} ran, ${s.cached} cached, ${s.failed} failed in ${formatMs(s.ms)}`];
  if (!isEmptyJson(s.metrics)) lines.push(`metrics: ${JSON.stringify(s.metrics)}`);
  return lines;
}

export function outputLine(o: { format: string; path: string }): string {
  return `output ${o.format} → ${o.path}`;
}

/** `850 ms`, `4.2 s`, `3 m 07 s`, `1 h 05 m` */
export function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} m ${String(s % 60).padStart(2, '0')} s`;
  const m = Math.round(s / 60);
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} m`;
}

function logText(message: string, id?: string): string {
  return id ? `[${id}] ${message}` : message;
}

function metricsSuffix(metrics: Json | undefined): string {
  if (metrics === undefined || isEmptyJson(metrics)) return '';
  const text = JSON.stringify(metrics);
  return `  ${text.length > 100 ? `${text.slice(0, 97)}...` : text}`;
}

function isEmptyJson(v: Json | undefined): boolean {
  return v === undefined || v === null || (typeof v === 'object' && Object.keys(v).length === 0);
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
