// `quantforge validate`: check a recipe (schema, then plan rules) without computing anything.

import { diagnosticToJson } from '../diag/print.js';
import type { Command } from './command.js';
import { buildOptions, recipeHelp, recipeOptions } from './build-options.js';

export const validateCommand: Command = {
  name: 'validate',
  summary: 'check a recipe against the schema and the plan rules; no compute',
  usage: 'quantforge validate RECIPE [--set PATH=VALUE]... [--json]',
  help: recipeHelp,
  options: recipeOptions,
  allowPositionals: 1,
  async run({ values, positionals }, io) {
    const { compilePlan } = await import('../plan/compile.js');
    const { loadRecipe } = await import('../recipe/load.js');
    const o = buildOptions(values, positionals);
    const loaded = loadRecipe(o.recipe, o.sets, o.inputs);
    if (loaded.ok && loaded.value.importNote) io.err(`note: ${loaded.value.importNote}`);
    const result = loaded.ok ? compilePlan(loaded.value) : loaded;
    const diagnostics = result.ok ? [...(loaded.ok ? loaded.value.warnings : []), ...result.value.warnings] : result.error;
    if (o.json) {
      io.out(JSON.stringify({ valid: result.ok, diagnostics: diagnostics.map((d) => diagnosticToJson(d)) }));
      return { code: result.ok ? 0 : 2 };
    }
    if (result.ok) io.out(`${o.recipe}: valid (${result.value.plan.steps.length} steps)`);
    return { code: result.ok ? 0 : 2, diagnostics };
  },
};
