// How a Linear parent's Gram losses are cut into calls (steps/awq-search.ts gramChunks): pieces that bound the
// memory of one call, inside the chunks that fixed the losses' arithmetic, never a piece of one candidate cut
// out of a larger chunk (a one-candidate call sums its loss in another order: test/graphs/awq-losses.test.ts).

import { describe, expect, test } from 'vitest';
import { gramChunks } from '../../src/steps/awq-search.js';

/** every candidate once, in order */
function covered(chunks: [number, number][]): number[] {
  return chunks.flatMap(([k0, k]) => Array.from({ length: k }, (_, j) => k0 + j));
}

describe('gramChunks', () => {
  test('one piece per chunk when the budget holds the chunk', () => {
    expect(gramChunks(20, 20, 37)).toEqual([[0, 20]]);
    expect(gramChunks(20, 5, 8)).toEqual([[0, 5], [5, 5], [10, 5], [15, 5]]);
  });

  test('a chunk larger than the budget is cut into pieces of the budget, the last of at least two', () => {
    expect(gramChunks(20, 20, 2)).toEqual(Array.from({ length: 10 }, (_, i) => [2 * i, 2]));
    expect(gramChunks(21, 5, 2)).toEqual([[0, 2], [2, 3], [5, 2], [7, 3], [10, 2], [12, 3], [15, 2], [17, 3], [20, 1]]);
    expect(gramChunks(7, 7, 3)).toEqual([[0, 3], [3, 4]]);
  });

  test('a budget under two candidates still gives pieces of two', () => {
    expect(gramChunks(6, 6, 0)).toEqual([[0, 2], [2, 2], [4, 2]]);
    expect(gramChunks(6, 6, 1)).toEqual([[0, 2], [2, 2], [4, 2]]);
  });

  test('chunks of one candidate (the fixed arithmetic of a one-candidate call) stay one', () => {
    expect(gramChunks(3, 1, 4)).toEqual([[0, 1], [1, 1], [2, 1]]);
  });

  test('every candidate is scored once, in order, and no piece is cut across a chunk boundary', () => {
    for (const K of [1, 2, 3, 11, 20, 21]) {
      for (const kc of [1, 2, 3, 5, 20]) {
        for (const piece of [0, 1, 2, 3, 7]) {
          const chunks = gramChunks(K, kc, piece);
          expect(covered(chunks)).toEqual(Array.from({ length: K }, (_, i) => i));
          for (const [k0, k] of chunks) {
            expect(Math.floor(k0 / kc)).toBe(Math.floor((k0 + k - 1) / Math.min(kc, K)));
            if (Math.min(kc, K - Math.floor(k0 / kc) * kc) > 1) expect(k).toBeGreaterThanOrEqual(2);
          }
        }
      }
    }
  });
});
