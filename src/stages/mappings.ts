// Smoothing mappings (SmoothQuant, AWQ): which activation producer (a norm, or a Linear's output rows) is
// divided by per-channel scales and which Linears absorb them. Defaults come from the architecture adapter;
// a recipe may give its own with module names or `re:` patterns, matched as llm-compressor matches them.

import { matchesName } from '../algo/targets.js';
import { errorAt } from '../diag/diagnostic.js';
import type { LinearSpec, Mapping } from '../model/arch.js';
import type { StageContext } from './stage.js';

/** a mapping as a recipe writes it (`mappings:` of smoothquant and awq) */
export interface SmoothMapping {
  smooth_layer: string;
  balance_layers: string[];
}

function localNames(ctx: StageContext): string[] {
  const prefix = ctx.b.arch.layerPrefix(0);
  return ctx.b.modules.filter((m) => m.layer === 0).map((m) => m.name.slice(prefix.length));
}

function resolvePattern(ctx: StageContext, pattern: string, locals: readonly string[]): string[] {
  const prefix = ctx.b.arch.layerPrefix(0);
  return locals.filter((l) => matchesName(`${prefix}${l}`, pattern) || matchesName(l, pattern));
}

/** mappings as local module names, ignored balance layers removed, shape-incompatible ones dropped */
export function resolveMappings(ctx: StageContext, custom: SmoothMapping[] | undefined, defaults: readonly Mapping[], ignore: readonly string[]): Mapping[] | undefined {
  const locals = localNames(ctx);
  let mappings: Mapping[] = [];
  if (custom) {
    for (const [i, m] of custom.entries()) {
      const smooth = resolvePattern(ctx, m.smooth_layer, locals);
      const balance = m.balance_layers.flatMap((p) => resolvePattern(ctx, p, locals));
      if (smooth.length !== 1 || balance.length === 0) {
        ctx.diagnostics.push(
          errorAt(
            'bad-mapping',
            smooth.length !== 1
              ? `smooth_layer "${m.smooth_layer}" should match exactly one module of a decoder layer, matched ${smooth.length}`
              : `balance_layers ${JSON.stringify(m.balance_layers)} match no module of a decoder layer`,
            ctx.locate(['mappings', i]),
          ),
        );
        continue;
      }
      mappings.push({ smooth: smooth[0]!, balance });
    }
    if (ctx.diagnostics.some((d) => d.severity === 'error')) return undefined;
  } else mappings = defaults.map((m) => ({ smooth: m.smooth, balance: [...m.balance] }));
  const prefix = ctx.b.arch.layerPrefix(0);
  const linears = ctx.b.arch.linears(ctx.b.config);
  return mappings
    .map((m) => ({ smooth: m.smooth, balance: m.balance.filter((b) => !ignore.some((p) => matchesName(`${prefix}${b}`, p) || matchesName(b, p))) }))
    .filter((m) => m.balance.length > 0)
    .filter((m) => shapesAllow(m, linears));
}

/** a Linear smoothing another (v → o) needs as many output rows as the balance layers have inputs (not so under GQA) */
export function shapesAllow(m: Mapping, linears: readonly LinearSpec[]): boolean {
  const out = linears.find((l) => l.local === m.smooth)?.outFeatures;
  return out === undefined || m.balance.every((b) => linears.find((l) => l.local === b)?.inFeatures === out);
}
