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

function localNames(ctx: StageContext, layer: number): string[] {
  const prefix = ctx.b.arch.layerPrefix(layer);
  return ctx.b.modules.filter((m) => m.layer === layer).map((m) => m.name.slice(prefix.length));
}

function resolvePattern(ctx: StageContext, layer: number, pattern: string, locals: readonly string[]): string[] {
  const prefix = ctx.b.arch.layerPrefix(layer);
  return locals.filter((l) => matchesName(`${prefix}${l}`, pattern) || matchesName(l, pattern));
}

/** a recipe's mappings against one layer's modules; what does not resolve is reported (`report`) or left out */
function resolveCustom(ctx: StageContext, layer: number, custom: SmoothMapping[], report: boolean): Mapping[] {
  const locals = localNames(ctx, layer);
  const out: Mapping[] = [];
  for (const [i, m] of custom.entries()) {
    const smooth = resolvePattern(ctx, layer, m.smooth_layer, locals);
    const balance = m.balance_layers.flatMap((p) => resolvePattern(ctx, layer, p, locals));
    if (smooth.length === 1 && balance.length > 0) {
      out.push({ smooth: smooth[0]!, balance });
      continue;
    }
    if (!report) continue;
    const message =
      smooth.length !== 1
        ? `smooth_layer "${m.smooth_layer}" should match exactly one module of a decoder layer, matched ${smooth.length}`
        : `balance_layers ${JSON.stringify(m.balance_layers)} match no module of a decoder layer`;
    ctx.diagnostics.push(errorAt('bad-mapping', message, ctx.locate(['mappings', i])));
  }
  return out;
}

/**
 * Each layer's mappings as local module names; a mapping whose smooth layer the stage ignores is left out,
 * shape-incompatible ones dropped. Ignored balance layers stay in their mapping (as llm-compressor resolves
 * them): the smooth op is divided by the scales, so every Linear reading its output must absorb them or the
 * layer's function changes; an ignored balance layer is scaled, not quantized. Layers differ where a model
 * mixes dense and expert MLPs; a recipe's own mappings are checked against layer 0 and applied to every layer
 * where they resolve.
 */
export function resolveMappings(ctx: StageContext, custom: SmoothMapping[] | undefined, defaults: (layer: number) => readonly Mapping[], ignore: readonly string[]): Mapping[][] | undefined {
  const perLayer: Mapping[][] = [];
  for (let l = 0; l < ctx.b.config.numLayers; l++) {
    const mappings = custom ? resolveCustom(ctx, l, custom, l === 0) : defaults(l).map((m) => ({ smooth: m.smooth, balance: [...m.balance] }));
    if (l === 0 && ctx.diagnostics.some((d) => d.severity === 'error')) return undefined;
    const prefix = ctx.b.arch.layerPrefix(l);
    const linears = ctx.b.arch.layer(ctx.b.config, l).linears;
    const ignored = (local: string): boolean => ignore.some((p) => matchesName(`${prefix}${local}`, p) || matchesName(local, p));
    perLayer.push(mappings.filter((m) => !ignored(m.smooth)).filter((m) => shapesAllow(m, linears)));
  }
  return perLayer;
}

/** a Linear smoothing another (v → o) needs as many output rows as the balance layers have inputs (not so under GQA) */
export function shapesAllow(m: Mapping, linears: readonly LinearSpec[]): boolean {
  const out = linears.find((l) => l.local === m.smooth)?.outFeatures;
  return out === undefined || m.balance.every((b) => linears.find((l) => l.local === b)?.inFeatures === out);
}
