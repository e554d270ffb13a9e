// The real models and data in ../shared: e2e tests use them, skip on a machine without them, and fail
// instead of skipping when QUANTFORGE_REQUIRE_SHARED=1 (CI).

import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, test } from 'vitest';

// QUANTFORGE_SHARED_DIR points elsewhere (test/setup/skip-summary.test.ts runs the suite without it)
export const SHARED = resolve(process.env['QUANTFORGE_SHARED_DIR'] ?? resolve(import.meta.dirname, '../../../shared'));
export const REPO = resolve(import.meta.dirname, '../..');
export const haveShared = existsSync(join(SHARED, 'models')) && existsSync(join(SHARED, 'data'));

export const sharedModel = (name: string): string => join(SHARED, 'models', name);
export const sharedData = (name: string): string => join(SHARED, 'data', name);

/** describe() over ../shared: skipped without it, a failing test when it is required */
export function describeShared(name: string, body: () => void): void {
  if (haveShared) {
    describe(name, body);
    return;
  }
  if (process.env['QUANTFORGE_REQUIRE_SHARED'] === '1') {
    describe(name, () => {
      test('needs ../shared', () => {
        throw new Error(`QUANTFORGE_REQUIRE_SHARED=1 but ${SHARED} has no models/ and data/`);
      });
    });
    return;
  }
  describe.skip(name, body);
}

/**
 * The shared models with their evaluation text and fp32 reference perplexity (seq_len 256, DESIGN.md §6).
 * `evalWindows`: how many leading windows the method tests score. WikiText-2 needs more than the stories
 * (its first windows are a few articles, too few to rank methods whose perplexities differ by 0.3%). The
 * full evaluation files (712, 1437 and 1540 windows) are scored by `bench/accuracy.ts` against the
 * independent reference; these windows only need to rank methods and anchor them to fp32.
 */
export const SHARED_MODELS = [
  { name: 'stories260K', eval: 'tinystories-eval.txt', calib: 'tinystories-calib.txt', ppl: 4.8927, evalWindows: 50 },
  { name: 'babyllama-char105', eval: 'tinystories-eval.txt', calib: 'tinystories-calib.txt', ppl: 2.368, evalWindows: 50 },
  { name: 'wiki-llama-8m', eval: 'wikitext-2-raw-test.txt', calib: 'wiki-calib.txt', ppl: 80.04, evalWindows: 200 },
] as const;
