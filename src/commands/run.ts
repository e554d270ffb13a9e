// `quantforge run` and `quantforge sweep`: build a recipe incrementally (only steps whose inputs changed run).
// Steps execute in the compute worker thread so progress stays live; Ctrl-C stops after cleaning up the
// current step, and a rerun resumes from the first unfinished one. With --queue they execute on the workers
// of a job queue instead (exec/queue/), which share the store; the plan, the reporters and the outputs stay here.

import { basename, dirname, join } from 'node:path';
import type { StepStore } from '../cache/step-store.js';
import { diagnosticToJson } from '../diag/print.js';
import type { Reporter } from '../exec/events.js';
import type { Prepared } from '../exec/prepare.js';
import type { RemoteRunner } from '../exec/runner.js';
import { UsageError, type Command, type CommandResult, type Io } from './command.js';
import { buildOptions, recipeHelp, recipeOptions, runDevice, type BuildOptions } from './build-options.js';
import { checkQueue, queueChoice, queueHelp, queueOptions, type QueueChoice } from './queue-options.js';

async function runBuild(o: BuildOptions, queue: QueueChoice | undefined, io: Io, sweep: boolean): Promise<CommandResult> {
    const { openChosenStore } = await import('./store-options.js');
    const { prepare } = await import('../exec/prepare.js');
    const { build } = await import('../exec/run.js');
    const { WorkerRunner } = await import('../exec/runner.js');
    const { createReporter } = await import('../exec/reporters/index.js');
    const { loadRecipe } = await import('../recipe/load.js');
    const { writeSweepTables } = await import('../exec/sweep-table.js');
  // warnings of the store (a stale lock taken over) go to the reporter once there is one
  let warn = (message: string): void => io.err(`warning: ${message}`);
  const store = await openChosenStore(o.store, { onWarn: (m) => warn(m) });
  if (queue) await checkQueue(queue.target);
  const peek = loadRecipe(o.recipe, o.sets, o.inputs);
  // the workers run the steps: a provider named outright is theirs to have, not this machine's
  const requested = o.device ?? (peek.ok ? peek.value.recipe.device : 'auto');
  const device = queue && requested !== 'auto' ? { device: requested } : runDevice(o.device, peek.ok ? peek.value.recipe.device : 'auto');
  const prepared = await prepare(o.recipe, o.sets, o.cacheDir, device.device, o.inputs);
  if (!prepared.ok) {
    if (o.json) io.out(JSON.stringify({ event: 'error', diagnostics: prepared.diagnostics.map((d) => diagnosticToJson(d)) }));
    return { code: 2, diagnostics: o.json ? [] : prepared.diagnostics };
  }
  const p = prepared.value;
  if (sweep && p.variants.length < 2) throw new UsageError('nothing to sweep: give a `sweep:` block or --set PATH=V1,V2,...');
  const reporter = await createReporter({ json: o.json, tty: io.isTTY && !o.json, stream: o.json ? process.stdout : process.stderr });
  warn = (message) => reporter.onEvent({ event: 'log', level: 'warn', message });
  // the listr tree starts at the plan event, so a notice before it is printed directly
  for (const notice of [p.recipe.importNote, device.notice]) {
    if (notice === undefined) continue;
    if (o.json) reporter.onEvent({ event: 'log', level: 'info', message: notice });
    else io.err(`note: ${notice}`);
  }
  const runner = queue ? await openQueue(queue, p, store, reporter) : new WorkerRunner({ device: device.device, ...(o.threads ? { threads: o.threads } : {}) });
  const abort = new AbortController();
  const onSigint = (): void => {
    reporter.onEvent({ event: 'log', level: 'warn', message: 'interrupted: stopping after cleaning up the current step' });
    abort.abort();
  };
  process.once('SIGINT', onSigint);
  try {
    const outcome = await build(p, store, runner, (e) => reporter.onEvent(e), abort.signal);
    await reporter.close();
    if (p.variants.length > 1 && outcome.exec.ok) {
      const dir = p.recipe.recipe.report ? p.recipe.paths.report! : join(dirname(o.recipe), `${basename(o.recipe).replace(/\.ya?ml$/, '')}.sweep`);
      const table = await writeSweepTables(p, outcome.metrics, dir);
      if (!o.json) io.out(table);
    }
    return { code: outcome.exec.ok ? 0 : 1, diagnostics: o.json ? [] : p.warnings };
  } finally {
    process.off('SIGINT', onSigint);
    await runner.close();
  }
}

/** the queue's runner; with --upload, the model and datasets go into the store first */
async function openQueue(queue: QueueChoice, p: Prepared, store: StepStore, reporter: Reporter): Promise<RemoteRunner> {
  const { QueueRunner } = await import('../exec/queue/queue-runner.js');
  const { uploadSources } = await import('../exec/queue/uploads.js');
  const { DigestStatCache } = await import('../cache/file-digest.js');
  const onWarn = (message: string): void => reporter.onEvent({ event: 'log', level: 'warn', message });
  const uploads = queue.upload ? await uploadSources(p.jobs, store, new DigestStatCache(store.root), (e) => reporter.onEvent(e)) : {};
  return QueueRunner.open(queue.target, { settings: queue.settings, uploads, onWarn });
}

export const runCommand: Command = {
  name: 'run',
  summary: 'build a recipe: run only the steps whose inputs changed, write outputs and metrics',
  usage: 'quantforge run RECIPE [--set PATH=VALUE]... [--json] [--store s3://BUCKET/PREFIX|DIR] [--cache-dir DIR] [--device D] [--queue redis://HOST:PORT]',
  help: `${recipeHelp}\n${queueHelp}`,
  options: { ...recipeOptions, ...queueOptions },
  allowPositionals: 1,
  run: ({ values, positionals }, io) => runBuild(buildOptions(values, positionals), queueChoice(values), io, false),
};

export const sweepCommand: Command = {
  name: 'sweep',
  summary: 'build every variant of a sweep (shared steps run once) and compare their metrics',
  usage: 'quantforge sweep RECIPE --set PATH=V1,V2,... [--set ...]... [--json] [--store s3://BUCKET/PREFIX|DIR] [--cache-dir DIR] [--device D] [--queue redis://HOST:PORT]',
  help: `${recipeHelp}\n${queueHelp}\n  The comparison table is printed and written as sweep.md and sweep.json (to the recipe's report\n  directory, else RECIPE.sweep/ beside the recipe).`,
  options: { ...recipeOptions, ...queueOptions },
  allowPositionals: 1,
  run: ({ values, positionals }, io) => runBuild(buildOptions(values, positionals), queueChoice(values), io, true),
};
