// Recipe paths are relative to the recipe file's directory; datasets may instead name a file inside the
// model directory (`model:calib.txt`), which for the example model only exists after its build step.

import { isAbsolute, resolve } from 'node:path';
import type { DatasetRef, Recipe, ResolvedPaths } from './types.js';

const MODEL_PREFIX = 'model:';

export function resolveRecipePath(dir: string, raw: string): string {
  return isAbsolute(raw) ? raw : resolve(dir, raw);
}

export function resolveDataset(dir: string, raw: string): DatasetRef {
  return raw.startsWith(MODEL_PREFIX)
    ? { source: 'model', file: raw.slice(MODEL_PREFIX.length) }
    : { source: 'file', path: resolveRecipePath(dir, raw) };
}

export function resolvePaths(recipe: Recipe, dir: string): ResolvedPaths {
  const perplexity = recipe.evaluate?.perplexity;
  return {
    model: typeof recipe.model === 'string' ? resolveRecipePath(dir, recipe.model) : undefined,
    calibration: recipe.calibration ? resolveDataset(dir, recipe.calibration.dataset) : undefined,
    perplexity: perplexity ? resolveDataset(dir, perplexity.dataset) : undefined,
    outputs: (recipe.outputs ?? []).map((o) => resolveRecipePath(dir, o.path)),
    report: recipe.report === undefined ? undefined : resolveRecipePath(dir, recipe.report),
  };
}
