import { describe, expect, test } from 'vitest';
import { AwqError, awqGrid, awqSearch, candidateScales, isIdentity, weightMeans, type AwqCandidate } from '../../src/algo/awq.js';
import type { WeightMatrix } from '../../src/algo/smoothquant.js';

const matrix = (rows: number[][]): WeightMatrix => ({ data: Float32Array.from(rows.flat()), rows: rows.length, cols: rows[0]!.length });

describe('awqGrid', () => {
  test('without duo scaling searches ratios i / n_grid on activations only, starting at the identity', () => {
    const grid = awqGrid(false, 4);
    expect(grid).toEqual([0, 0.25, 0.5, 0.75].map((ratio) => ({ ratio, duo: false })));
    expect(isIdentity(grid[0]!)).toBe(true);
  });

  test('with duo scaling searches the identity first, then n_grid duo ratios', () => {
    const grid = awqGrid(true, 4);
    expect(grid).toEqual([{ ratio: 0, duo: false }, ...[0, 0.25, 0.5, 0.75].map((ratio) => ({ ratio, duo: true }))]);
  });

  test('"both" searches floor(n_grid / 2) ratios with each family, interleaved', () => {
    expect(awqGrid('both', 5)).toEqual([
      { ratio: 0, duo: false },
      { ratio: 0, duo: true },
      { ratio: 0.5, duo: false },
      { ratio: 0.5, duo: true },
    ]);
    expect(awqGrid('both', 1)).toEqual([
      { ratio: 0, duo: false },
      { ratio: 0, duo: true },
    ]);
  });

  test('rejects an n_grid below 1 or not an integer', () => {
    expect(() => awqGrid(true, 0)).toThrow(AwqError);
    expect(() => awqGrid(false, 2.5)).toThrow(/n_grid is 2.5/);
  });
});

describe('weightMeans', () => {
  const w = matrix([
    [1, -2, 4, 0],
    [2, 2, -1, 1],
  ]);
  const close = (got: Float32Array, want: number[]): void => want.forEach((v, i) => expect(got[i]).toBeCloseTo(v, 5));

  test('normalises |W| by each group maximum and averages over rows', () => {
    // row 0: groups [1, -2] / 2 and [4, 0] / 4; row 1: [2, 2] / 2 and [-1, 1] / 1
    close(weightMeans([{ weight: w, args: { strategy: 'group', group_size: 2 } }]), [0.75, 1, 1, 0.5]);
  });

  test('normalises per row for channel and over the whole tensor for tensor', () => {
    close(weightMeans([{ weight: w, args: { strategy: 'channel', group_size: null } }]), [0.625, 0.75, 0.75, 0.25]);
    close(weightMeans([{ weight: w, args: { strategy: 'tensor', group_size: null } }]), [0.375, 0.5, 0.625, 0.125]);
  });

  test('handles a partial last group and averages over the rows of every balance layer', () => {
    const a = matrix([[2, -1, 3]]);
    const b = matrix([[1, 1, -6]]);
    // a: [2, -1] / 2, [3] / 3; b: [1, 1] / 1, [-6] / 6
    close(weightMeans([{ weight: a, args: { strategy: 'group', group_size: 2 } }, { weight: b, args: { strategy: 'group', group_size: 2 } }]), [1, 0.75, 1]);
  });
});

describe('candidateScales', () => {
  const x = Float32Array.of(1, 4);

  test('activation-only scales x^r normalised by sqrt(max · min)', () => {
    const s = candidateScales(x, undefined, { ratio: 0.5, duo: false });
    expect(s[0]).toBeCloseTo(1 / Math.SQRT2, 6);
    expect(s[1]).toBeCloseTo(Math.SQRT2, 6);
  });

  test('duo scales x^r / (w^(1−r) + 1e-4)', () => {
    const s = candidateScales(x, Float32Array.of(0.25, 1), { ratio: 0.5, duo: true });
    // raw: 1 / (0.5 + 1e-4) = 1.9996, 2 / (1 + 1e-4) = 1.9998; normalised by their geometric mean
    const raw = [1 / 0.5001, 2 / 1.0001];
    const g = Math.sqrt(raw[0]! * raw[1]!);
    expect(s[0]).toBeCloseTo(raw[0]! / g, 6);
    expect(s[1]).toBeCloseTo(raw[1]! / g, 6);
  });

  test('ratio 0 without duo is exactly the identity, and zero activations clamp to 1e-4', () => {
    expect(Array.from(candidateScales(Float32Array.of(0, 3, 7), undefined, { ratio: 0, duo: false }))).toEqual([1, 1, 1]);
    const s = candidateScales(Float32Array.of(0, 1e-2), undefined, { ratio: 1, duo: false });
    expect(s[0]).toBeCloseTo(1e-4 / Math.sqrt(1e-4 * 1e-2), 5);
  });

  test('duo scaling without weight means is an error', () => {
    expect(() => candidateScales(x, undefined, { ratio: 0.5, duo: true })).toThrow(AwqError);
  });
});

describe('awqSearch', () => {
  const candidates: AwqCandidate[] = awqGrid(false, 4);
  const xMean = Float32Array.of(1, 16);

  test('keeps the candidate with the lowest loss and reports the identity loss', async () => {
    // normalised scales are [4^-r, 4^r]; the loss |s₁ − 2| is lowest at r = 0.5
    const r = await awqSearch({
      xMean,
      candidates,
      losses: async (scales, K) => Float64Array.from({ length: K }, (_, k) => Math.abs((scales[k * 2 + 1] as number) - 2)),
    });
    expect(r.best).toEqual({ ratio: 0.5, duo: false });
    expect(r.scales[1]).toBeCloseTo(2, 6);
    expect(r.identityLoss).toBeCloseTo(1, 6);
    expect(r.losses).toHaveLength(4);
  });

  test('keeps the first of equal losses and skips NaN', async () => {
    const r = await awqSearch({ xMean, candidates, losses: async () => Float64Array.of(NaN, 1, 1, 2) });
    expect(r.best.ratio).toBe(0.25);
  });

  test('fails when no candidate has a finite loss', async () => {
    await expect(awqSearch({ xMean, candidates, losses: async () => Float64Array.of(NaN, Infinity, NaN, NaN) })).rejects.toThrow(AwqError);
  });
});
