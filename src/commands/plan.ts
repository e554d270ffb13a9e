// `quantforge plan`: print the steps a run would execute and why, like `make -n`.

import { diagnosticToJson } from '../diag/print.js';
import type { Command } from './command.js';
import { buildOptions, recipeHelp, recipeOptions, runDevice } from './build-options.js';

export const planCommand: Command = {
  name: 'plan',
  summary: 'show the steps of a recipe: fresh (cached) or run, with the reason',
  usage: 'quantforge plan RECIPE [--set PATH=VALUE]... [--json] [--store s3://BUCKET/PREFIX|DIR] [--cache-dir DIR]',
  help: recipeHelp,
  options: recipeOptions,
  allowPositionals: 1,
  async run({ values, positionals }, io) {
    const { openChosenStore } = await import('./store-options.js');
    const { prepare } = await import('../exec/prepare.js');
    const { lookupAll, planStates } = await import('../exec/run.js');
    const { loadRecipe } = await import('../recipe/load.js');
    const o = buildOptions(values, positionals);
    const store = await openChosenStore(o.store, { onWarn: (m) => io.err(`warning: ${m}`) });
    const peek = loadRecipe(o.recipe, o.sets, o.inputs);
    const device = runDevice(o.device, peek.ok ? peek.value.recipe.device : 'auto').device;
    const prepared = await prepare(o.recipe, o.sets, o.cacheDir, device, o.inputs);
    if (!prepared.ok) {
      if (o.json) io.out(JSON.stringify({ event: 'error', diagnostics: prepared.diagnostics.map((d) => diagnosticToJson(d)) }));
      return { code: 2, diagnostics: o.json ? [] : prepared.diagnostics };
    }
    if (prepared.value.recipe.importNote) io.err(`note: ${prepared.value.recipe.importNote}`);
    const steps = planStates(prepared.value, await lookupAll(prepared.value, store), o.cacheDir);
    if (o.json) {
      io.out(JSON.stringify({ event: 'plan', steps }));
      return { code: 0 };
    }
    const width = Math.max(...steps.map((s) => s.id.length));
    let group = '';
    for (const s of steps) {
      if (s.group !== group) io.out(`${(group = s.group)}:`);
      io.out(`  ${s.id.padEnd(width)}  ${s.state === 'fresh' ? 'fresh' : `run (${s.reason})`}`);
    }
    const toRun = steps.filter((s) => s.state === 'run').length;
    io.out(`${steps.length} steps: ${toRun} to run, ${steps.length - toRun} fresh`);
    return { code: 0, diagnostics: prepared.value.warnings };
  },
};
