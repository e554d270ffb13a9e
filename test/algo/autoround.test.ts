import { describe, expect, test } from 'vitest';
import {
  addScaledGrads, BestTracker, blockRandom, copyParams, IndexSampler, scaleGrads, initialParams, learnedQParams, linearLr, quantizeLearned, quantizeWithOffsets, sampleCurve, signSgdStep,
} from '../../src/algo/autoround.js';
import { quantizeWeightRtn } from '../../src/algo/fake-quant.js';
import { computeQParams, weightMinMax } from '../../src/quant/qparams.js';
import { resolveQuantArgs, type QuantArgs } from '../../src/quant/scheme.js';
import { seededRandom } from '../../src/random.js';
import { quantLayout } from '../../src/algo/autoround-layout.js';

const random = seededRandom(3);
const weight = (rows: number, cols: number): Float32Array => Float32Array.from({ length: rows * cols }, () => (random() - 0.45) * 0.2);

describe('linearLr', () => {
  test('decays linearly from lr to lr/iters over the iterations, as torch LinearLR(1 → 0)', () => {
    expect([0, 1, 2, 3].map((i) => linearLr(0.4, i, 4))).toEqual([0.4, 0.30000000000000004, 0.2, 0.1]);
    expect(linearLr(0.4, 4, 4)).toBe(0);
  });
});

describe('signSgdStep', () => {
  test('moves each parameter by lr against the sign of its gradient, not at all for a zero gradient', () => {
    const p = Float32Array.of(0, 0.1, -0.2, 0.3);
    signSgdStep(p, Float32Array.of(5, -1e-9, 0, -3), 0.25, -0.5, 0.5);
    expect([...p]).toEqual([-0.25, Math.fround(0.35), Math.fround(-0.2), 0.5]);
  });

  test('clamps the parameters into their bounds after the step', () => {
    const p = Float32Array.of(0.375, -0.375, 0.125);
    signSgdStep(p, Float32Array.of(-1, 1, 1), 0.25, -0.5, 0.5);
    expect([...p]).toEqual([0.5, -0.5, -0.125]);
    const scale = Float32Array.of(0.95, 0.02);
    signSgdStep(scale, Float32Array.of(-1, 1), 0.1, 0, 1);
    expect([...scale]).toEqual([1, 0]);
  });

  test('equals the branch on the sign bit for bit: signed zeros and NaN leave p, infinities and subnormals step, gradient views at an offset', () => {
    const reference = (p: Float32Array, g: Float32Array, lr: number, lo: number, hi: number): void => {
      g.forEach((gi, i) => {
        if (gi === 0 || Number.isNaN(gi)) return;
        const x = (p[i] as number) - (gi > 0 ? lr : -lr);
        p[i] = Math.min(Math.max(x, lo), hi);
      });
    };
    const special = [0, -0, NaN, -NaN, Infinity, -Infinity, 1e-45, -1e-45, 3.4e38, -3.4e38];
    const grads = new Float32Array(1 + special.length + 500);
    grads.set(special, 1);
    let seed = 7;
    for (let i = 1 + special.length; i < grads.length; i++) grads[i] = ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) - 0.5;
    const view = grads.subarray(1);
    const [got, want] = [new Float32Array(view.length), new Float32Array(view.length)];
    for (let i = 0; i < got.length; i++) got[i] = want[i] = ((i * 37) % 100) / 100 - 0.5;
    for (const lr of [0.02, 1 / 3, 0.7]) {
      signSgdStep(got, view, lr, -0.5, 0.5);
      reference(want, view, lr, -0.5, 0.5);
      expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer))).toBe(true);
    }
  });

  test('refuses gradients of a different length', () => {
    expect(() => signSgdStep(new Float32Array(3), new Float32Array(2), 0.1, -1, 1)).toThrow(/3 parameters but 2 gradients/);
  });
});

describe('IndexSampler', () => {
  test('one pass over the shuffled samples gives disjoint batches covering whole batches only', () => {
    const s = new IndexSampler(10, 3, blockRandom(42, 0));
    const seen = [s.next(), s.next(), s.next()].flat();
    expect(new Set(seen).size).toBe(9);
    expect(seen.every((i) => i >= 0 && i < 10)).toBe(true);
    // only one sample is left: a fresh shuffle starts
    expect(s.next()).toHaveLength(3);
  });

  test('the same seed and layer give the same batches; another layer gives another order', () => {
    const draw = (seed: number, layer: number): number[][] => {
      const s = new IndexSampler(16, 4, blockRandom(seed, layer));
      return Array.from({ length: 8 }, () => s.next());
    };
    expect(draw(7, 2)).toEqual(draw(7, 2));
    expect(draw(7, 2)).not.toEqual(draw(7, 3));
  });

  test('a batch larger than the samples is cut to all of them', () => {
    const s = new IndexSampler(3, 8, blockRandom(0, 0));
    expect(s.batchSize).toBe(3);
    expect([...s.next()].sort()).toEqual([0, 1, 2]);
  });

  test('no samples is refused', () => {
    expect(() => new IndexSampler(0, 2, blockRandom(0, 0))).toThrow(/expected a positive integer/);
  });
});

describe('addScaledGrads', () => {
  test('adds weighted gradients into the accumulator, creating missing entries', () => {
    const acc = addScaledGrads({}, { q: { v: Float32Array.of(2, -4), minScale: Float32Array.of(1) } }, 0.25);
    addScaledGrads(acc, { q: { v: Float32Array.of(4, 4), minScale: Float32Array.of(-1) } }, 0.75);
    expect([...acc.q!.v]).toEqual([3.5, 2]);
    expect([...acc.q!.minScale!]).toEqual([-0.5]);
    expect(acc.q!.maxScale).toBeUndefined();
  });
});

describe('scaleGrads', () => {
  test('scaling the first part in place then adding the others is addScaledGrads from zeros, bit for bit', () => {
    const r = blockRandom(3, 0);
    const rand = (n: number): Float32Array => Float32Array.from({ length: n }, () => (r() - 0.5) * 10 ** Math.floor(r() * 8 - 4));
    const parts = [0, 1, 2].map(() => ({ q: { v: rand(64), minScale: rand(4) } }));
    const weights = [0.375, 0.375, 0.25];
    let fresh = {};
    parts.forEach((p, i) => (fresh = addScaledGrads(fresh, p, weights[i]!)));
    const copy = (g: (typeof parts)[number]) => ({ q: { v: g.q.v.slice(), minScale: g.q.minScale.slice() } });
    const inPlace = scaleGrads(copy(parts[0]!), weights[0]!);
    addScaledGrads(inPlace, copy(parts[1]!), weights[1]!);
    addScaledGrads(inPlace, copy(parts[2]!), weights[2]!);
    const [got, want] = [inPlace.q!, (fresh as typeof inPlace).q!];
    expect(Buffer.from(got.v.buffer).equals(Buffer.from(want.v.buffer))).toBe(true);
    expect(Buffer.from(got.minScale!.buffer).equals(Buffer.from(want.minScale!.buffer))).toBe(true);
  });
});

describe('copyParams', () => {
  test('copies into a given snapshot\'s arrays, or into new ones', () => {
    const p = { v: Float32Array.of(0.25, -0.5), minScale: Float32Array.of(0.9), maxScale: Float32Array.of(1) };
    const into = { v: new Float32Array(2), minScale: new Float32Array(1), maxScale: new Float32Array(1) };
    const kept = copyParams(p, into);
    expect(kept).toBe(into);
    expect(kept.v).not.toBe(p.v);
    expect([...kept.v, ...kept.minScale, ...kept.maxScale]).toEqual([0.25, -0.5, Math.fround(0.9), 1]);
    expect(copyParams(p).v).not.toBe(p.v);
  });
});

describe('BestTracker', () => {
  test('keeps the snapshot of the strictly lowest loss, taking snapshots only on improvement', () => {
    const t = new BestTracker<string>();
    let snaps = 0;
    const snap = (s: string) => () => (snaps++, s);
    expect(t.observe(0, 3, snap('a'))).toBe(true);
    expect(t.observe(1, 2, snap('b'))).toBe(true);
    expect(t.observe(2, 2, snap('c'))).toBe(false);
    expect(t.observe(3, Number.NaN, snap('d'))).toBe(false);
    expect([t.loss, t.iter, t.params, snaps]).toEqual([2, 1, 'b', 2]);
  });
});

describe('sampleCurve', () => {
  test('keeps short curves whole and samples long ones evenly with both ends', () => {
    expect(sampleCurve([3, 2, 1])).toEqual([[0, 3], [1, 2], [2, 1]]);
    const long = Array.from({ length: 1000 }, (_, i) => i);
    const s = sampleCurve(long, 200);
    expect(s).toHaveLength(200);
    expect(s[0]).toEqual([0, 0]);
    expect(s.at(-1)).toEqual([999, 999]);
  });
});

const CASES: [string, QuantArgs, number, number][] = [
  ['W4A16 (sym, group 128, partial last group)', resolveQuantArgs({ num_bits: 4, symmetric: true, group_size: 128 }), 6, 172],
  ['W4A16_ASYM (group 128, one partial group)', resolveQuantArgs({ num_bits: 4, symmetric: false, group_size: 128 }), 5, 64],
  ['W8 channel', resolveQuantArgs({ num_bits: 8, symmetric: true, group_size: -1 }), 4, 40],
  ['int4 asym tensor', resolveQuantArgs({ num_bits: 4, symmetric: false, strategy: 'tensor' }), 3, 24],
  ['int4 sym group 16 on one row', resolveQuantArgs({ num_bits: 4, symmetric: true, group_size: 16 }), 1, 40],
];

describe('quantizeLearned', () => {
  for (const [name, args, rows, cols] of CASES) {
    test(`at V = 0 and factors 1 it gives exactly the round-to-nearest codes and qparams: ${name}`, async () => {
      const w = weight(rows, cols);
      const l = quantLayout(rows, cols, args.strategy, args.group_size);
      const q = quantizeLearned(w, l, weightMinMax(w, rows, cols, args), initialParams(l), args);
      const rtn = await quantizeWeightRtn(w, rows, cols, args);
      expect(q.codes).toEqual(rtn.codes);
      expect(q.scale).toEqual(rtn.scale);
      expect(q.zeroPoint).toEqual(rtn.zeroPoint);
      expect(q.scaleDims).toEqual(rtn.scaleDims);
      expect(q.dequantized).toEqual(rtn.dequantized);
    });
  }

  test('factors below 1 shrink the range the scales come from', () => {
    const args = resolveQuantArgs({ num_bits: 4, symmetric: false, group_size: 8 });
    const w = weight(2, 16);
    const range = weightMinMax(w, 2, 16, args);
    const half = { minScale: new Float32Array(4).fill(0.5), maxScale: new Float32Array(4).fill(0.5) };
    const qp = learnedQParams(range, half, args);
    const expected = computeQParams(range.min.map((x) => Math.min(x, 0) * 0.5), range.max.map((x) => Math.max(x, 0) * 0.5), args);
    expect(qp.scale).toEqual(expected.scale);
    expect(qp.zeroPoint).toEqual(expected.zeroPoint);
  });

  test('an offset of ±0.5 moves a code across its rounding boundary, and codes stay in range', () => {
    const args = resolveQuantArgs({ num_bits: 4, symmetric: true, group_size: -1 });
    const w = Float32Array.of(0.3, -0.3, 0.7, -0.7, 0.14, 0.75);
    const l = quantLayout(1, 6, args.strategy, args.group_size);
    const qp = computeQParams(Float32Array.of(-0.75), Float32Array.of(0.75), args); // scale 0.1
    expect([...quantizeWithOffsets(w, l, qp, new Float32Array(6), args)]).toEqual([3, -3, 7, -7, 1, 7]);
    const v = Float32Array.of(0.25, -0.25, 0.5, -0.5, 0.45, 0.5);
    expect([...quantizeWithOffsets(w, l, qp, v, args)]).toEqual([3, -3, 7, -8, 2, 7]);
  });

  test('the stored codes and qparams reproduce the dequantized weight bit for bit', () => {
    const args = resolveQuantArgs({ num_bits: 4, symmetric: false, group_size: 16 });
    const [rows, cols] = [4, 40];
    const w = weight(rows, cols);
    const l = quantLayout(rows, cols, args.strategy, args.group_size);
    const p = initialParams(l);
    p.v = p.v.map(() => random() - 0.5);
    p.minScale = p.minScale.map(() => 0.6 + 0.4 * random());
    p.maxScale = p.maxScale.map(() => 0.6 + 0.4 * random());
    const q = quantizeLearned(w, l, weightMinMax(w, rows, cols, args), p, args);
    const groups = q.scaleDims[1];
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const j = r * groups + Math.floor(c / 16);
        const code = q.codes[r * cols + c]!;
        expect(code).toBeGreaterThanOrEqual(-8);
        expect(code).toBeLessThanOrEqual(7);
        expect(q.dequantized[r * cols + c]).toBe(Math.fround((code - q.zeroPoint[j]!) * q.scale[j]!));
      }
    }
  });
});
