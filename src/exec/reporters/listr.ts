// The interactive reporter (a TTY): one listr2 task per step group ("stage 1: gptq"), its title counting
// finished steps, its output line showing the running step's progress and an ETA from its progress rate.
// The executor runs heavy steps in a worker thread, so this event loop stays free to redraw. listr2 is
// imported nowhere else.

import { Listr, ListrLogger, ProcessOutput, type ListrTaskWrapper } from 'listr2';
import type { Writable } from 'node:stream';
import type { Reporter, RunEvent } from '../events.js';
import { formatMs, outputLine, PlainReporter, progressText, summaryLines } from './plain.js';
import { formatPosition } from '../../diag/print.js';

export interface ListrReporterOptions {
  /** default process.stdout */
  stream?: Writable;
  /** `default` in a terminal; tests use `simple` or `silent` */
  renderer?: 'default' | 'simple' | 'silent';
  now?: () => number;
}

// the renderer is chosen at run time, so the task wrapper is typed loosely
type AnyTask = ListrTaskWrapper<unknown, any, any>;
type SummaryEvent = Extract<RunEvent, { event: 'summary' }>;

interface Running {
  id: string;
  startedAt: number;
  done: number;
  total: number;
  message?: string;
}

interface Group {
  name: string;
  steps: Set<string>;
  finished: Set<string>;
  ran: number;
  cached: number;
  failedCount: number;
  /** the first failure of the group, shown as the task's error */
  failed?: string;
  running: Map<string, Running>;
  task?: AnyTask;
  settle: (failure?: Error) => void;
  settled: Promise<Error | undefined>;
}

export class ListrReporter implements Reporter {
  readonly #stream: Writable;
  readonly #renderer: 'default' | 'simple' | 'silent';
  readonly #now: () => number;
  readonly #groups = new Map<string, Group>();
  readonly #groupOf = new Map<string, Group>();
  readonly #after: string[] = [];
  #summary: SummaryEvent | undefined;
  #planned: number | undefined;
  #run: Promise<unknown> | undefined;
  #ticker: NodeJS.Timeout | undefined;
  /** events that came before any plan are rendered as plain lines instead */
  #fallback: PlainReporter | undefined;

  constructor(opts: ListrReporterOptions = {}) {
    this.#stream = opts.stream ?? process.stdout;
    this.#renderer = opts.renderer ?? 'default';
    this.#now = opts.now ?? Date.now;
  }

  onEvent(e: RunEvent): void {
    if (e.event === 'plan' && this.#run === undefined && this.#fallback === undefined) return this.#start(e.steps);
    if (this.#run === undefined && e.event !== 'summary') {
      this.#fallback ??= new PlainReporter({ stream: this.#stream });
      return this.#fallback.onEvent(e);
    }
    switch (e.event) {
      case 'step-start': {
        const g = this.#groupOf.get(e.id);
        g?.running.set(e.id, { id: e.id, startedAt: this.#now(), done: 0, total: 0 });
        if (g) this.#draw(g);
        return;
      }
      case 'step-progress': {
        const g = this.#groupOf.get(e.id);
        const r = g?.running.get(e.id);
        if (!g || !r) return;
        Object.assign(r, { done: e.done, total: e.total, message: e.message });
        return this.#draw(g);
      }
      case 'step-done':
      case 'step-failed': {
        const g = this.#groupOf.get(e.id);
        if (!g) return;
        g.running.delete(e.id);
        if (!g.finished.has(e.id)) {
          g.finished.add(e.id);
          if (e.event === 'step-failed') {
            g.failedCount++;
            g.failed ??= `${e.id} (${e.reason}): ${e.message}${e.location ? ` at ${formatPosition(e.location)}` : ''}`;
          }
          else if (e.result === 'ran') g.ran++;
          else g.cached++;
        }
        this.#draw(g);
        if (g.finished.size === g.steps.size) g.settle(g.failed ? new Error(g.failed) : undefined);
        return;
      }
      case 'log': {
        const line = `${e.level === 'warn' ? 'warning: ' : ''}${e.id ? `[${e.id}] ` : ''}${e.message}`;
        if (e.level === 'warn') this.#after.push(line);
        const g = e.id ? this.#groupOf.get(e.id) : undefined;
        if (g?.task) g.task.output = line;
        return;
      }
      case 'output':
        this.#after.push(outputLine(e));
        return;
      case 'summary':
        this.#summary = e;
        return;
      case 'plan':
        return;
    }
  }

  async close(): Promise<void> {
    if (this.#ticker) clearInterval(this.#ticker);
    // groups the run never finished (it failed or was interrupted) end as skipped
    for (const g of this.#groups.values()) if (g.finished.size < g.steps.size) g.settle();
    await this.#run?.catch(() => undefined);
    const lines = [...this.#after, ...(this.#summary ? summaryLines(this.#summary, this.#planned) : [])];
    if (this.#fallback) {
      if (this.#summary) this.#fallback.onEvent(this.#summary);
      return this.#fallback.close();
    }
    await new Promise<void>((resolve) => this.#stream.write(lines.map((l) => `${l}\n`).join(''), () => resolve()));
  }

  #start(steps: Extract<RunEvent, { event: 'plan' }>['steps']): void {
    this.#planned = steps.length;
    for (const s of steps) {
      let g = this.#groups.get(s.group);
      if (!g) {
        let settle!: (failure?: Error) => void;
        const settled = new Promise<Error | undefined>((resolve) => (settle = resolve));
        g = { name: s.group, steps: new Set(), finished: new Set(), ran: 0, cached: 0, failedCount: 0, running: new Map(), settle, settled };
        this.#groups.set(s.group, g);
      }
      g.steps.add(s.id);
      this.#groupOf.set(s.id, g);
      if (s.state === 'fresh') {
        g.finished.add(s.id);
        g.cached++;
      }
    }
    const logger = new ListrLogger({ processOutput: new ProcessOutput(this.#stream as NodeJS.WriteStream, this.#stream as NodeJS.WriteStream) });
    const listr = new Listr(
      [...this.#groups.values()].map((g) => ({
        title: g.name,
        task: async (_ctx: unknown, task: AnyTask) => {
          g.task = task;
          if (g.finished.size === g.steps.size && g.ran === 0 && !g.failed) return task.skip(`${g.name} (${g.cached} cached)`);
          this.#draw(g);
          const failure = await g.settled;
          this.#draw(g);
          if (failure) throw failure;
          if (g.finished.size < g.steps.size) task.skip(`${g.name} (not run)`);
        },
      })),
      {
        concurrent: true,
        exitOnError: false,
        registerSignalListeners: false,
        renderer: this.#renderer,
        rendererOptions: { logger, collapseSubtasks: false },
        fallbackRenderer: 'simple',
        fallbackRendererOptions: { logger },
      } as ConstructorParameters<typeof Listr>[1],
    );
    this.#run = listr.run();
    // the ETA counts down between progress events
    this.#ticker = setInterval(() => this.#groups.forEach((g) => g.running.size > 0 && this.#draw(g)), 1000);
    this.#ticker.unref();
  }

  #draw(g: Group): void {
    if (!g.task) return;
    const failed = g.failedCount > 0 ? `, ${g.failedCount} failed` : '';
    g.task.title =
      g.finished.size === g.steps.size
        ? `${g.name} · ${g.ran} ran, ${g.cached} cached${failed}`
        : `${g.name} [${g.finished.size}/${g.steps.size}]`;
    const lines = [...g.running.values()].map((r) => this.#runningLine(r));
    if (lines.length > 0) g.task.output = lines.join('\n');
  }

  #runningLine(r: Running): string {
    const elapsed = this.#now() - r.startedAt;
    if (r.total <= 0) return `${r.id} · ${formatMs(elapsed)}`;
    const eta = r.done > 0 && r.done < r.total ? ` · ETA ${formatMs((elapsed * (r.total - r.done)) / r.done)}` : '';
    return `${r.id} ${progressText(r.done, r.total, r.message)}${eta}`;
  }
}
