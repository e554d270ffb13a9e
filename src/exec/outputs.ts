// Publishing a build: output artifacts are copied from the cache to the recipe's output paths, each with
// quantforge.lock.json (provenance: recipe digest, resolved params, step keys, input digests, tool versions)
// and the recipe itself, all three in the one new directory that replaces the old one (cache/apply-output.ts),
// so concurrent runs and readers never see a directory without its lock file or a half-written one. An
// output already holding the same entry is left alone (leftovers of a killed writer beside it are tidied).

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { recoverOutputDir } from '../cache/apply-output.js';
import { sha256Hex, type Digest, type Json } from '../cache/key.js';
import type { StepStore } from '../cache/step-store.js';
import type { RunEvent } from './events.js';
import type { ExecResult } from './executor.js';
import type { StepId } from '../stages/step-plan.js';
import type { Prepared, Variant } from './prepare.js';
import { CacheError } from '../cache/cache-error.js';
import { onFullDisk, readJsonFile } from '../diag/file-errors.js';

export const LOCK_FILE = 'quantforge.lock.json';

/** where a variant's output goes: the recipe's path, or a subdirectory per variant in a sweep */
export function outputPath(prepared: Prepared, v: Variant, path: string): string {
  return prepared.variants.length > 1 ? join(path, v.label.replace(/[^A-Za-z0-9._=,-]/g, '_')) : path;
}

function lockFile(prepared: Prepared, v: Variant, format: string, key: Digest, exec: ExecResult): Json {
  const steps: Record<string, string> = {};
  const files: Record<string, string> = {};
  for (const [id, k] of v.keys) {
    steps[id] = k;
    const entry = exec.entries.get(k);
    for (const [role, d] of Object.entries(entry?.meta.record.files ?? {})) files[role] = d;
  }
  const first = exec.entries.get(key)?.meta.record;
  return {
    quantforge_lock: 1,
    recipe: { path: prepared.recipe.path, sha256: sha256Hex(prepared.recipe.file.contents) },
    variant: v.label || null,
    overrides: v.loaded.assignments.map((a) => ({ path: a.path.join('.'), value: a.value })) as Json,
    params: v.loaded.recipe as unknown as Json,
    output: { format, key },
    steps,
    files,
    tools: (first?.tools ?? {}) as Json,
  };
}

export async function applyOutputs(prepared: Prepared, v: Variant, exec: ExecResult, cache: StepStore, emit: (e: RunEvent) => void): Promise<{ format: string; path: string }[]> {
  const done: { format: string; path: string }[] = [];
  for (const o of v.plan.outputs) {
    const key = v.keys.get(o.step)!;
    const entry = exec.entries.get(key);
    if (!entry) continue;
    const dest = outputPath(prepared, v, o.path);
    try {
      if (appliedKey(dest) === key) await recoverOutputDir(dest);
      else {
        const check = await cache.verify(entry);
        if (!check.ok) throw new CacheError('cache-entry-corrupt', `cache entry for output ${dest} is corrupt (${check.problem}); rerun to rebuild it`);
        // the recipe and the lock file are part of the new directory, so it appears complete or not at all
        await cache.applyTo(entry, dest, {
          'recipe.yaml': prepared.recipe.file.contents,
          [LOCK_FILE]: `${JSON.stringify(lockFile(prepared, v, o.format, key, exec), null, 2)}\n`,
        });
      }
    } catch (e) {
      throw onFullDisk(e, dest);
    }
    emit({ event: 'output', format: o.format, path: dest });
    done.push({ format: o.format, path: dest });
  }
  return done;
}

/** the entry key an output directory's lock file says it holds; a missing or damaged lock file holds none */
function appliedKey(dest: string): string | undefined {
  const lockPath = join(dest, LOCK_FILE);
  if (!existsSync(lockPath)) return undefined;
  try {
    return (readJsonFile(lockPath) as { output?: { key?: string } } | null)?.output?.key;
  } catch {
    return undefined;
  }
}

/** perplexity of every evaluated model of a variant (fp, quantized, then the written ones), and the KL */
export function variantMetrics(v: Variant, exec: ExecResult): Json {
  const result = (id: StepId): Record<string, Json> | undefined => {
    const key = v.keys.get(id);
    return key ? (exec.entries.get(key)?.meta.result as Record<string, Json> | undefined) : undefined;
  };
  const perplexity: Record<string, Json> = {};
  for (const e of v.plan.evaluations) {
    const r = result(e.step);
    if (r) perplexity[e.role] = r['perplexity'] ?? null;
  }
  if (perplexity['fp'] === undefined && perplexity['quantized'] === undefined) return {};
  const quantized = v.plan.evaluations.find((e) => e.role === 'quantized');
  const kl = quantized ? result(quantized.step)?.['kl'] : undefined;
  return { perplexity, ...(kl !== undefined ? { kl } : {}) };
}
