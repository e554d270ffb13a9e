import { afterAll, describe, expect, test } from 'vitest';
import { JS_MSE_LIMIT, ObserverError, mseMinMax, mseOptions, observeWeight, type WeightObserverArgs } from '../../src/algo/observers.js';
import { observerKind } from '../../src/quant/quant-args.js';
import { computeQParams, fakeQuantizeWeight, weightMinMax } from '../../src/quant/qparams.js';
import { Runtime } from '../../src/ort/session.js';
import { seededRandom } from '../../src/random.js';

const rng = seededRandom;
function gaussian(n: number, seed: number, outliers = 0): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
  for (let k = 0; k < outliers; k++) out[Math.floor(r() * n)] = (r() < 0.5 ? -1 : 1) * (4 + 4 * r());
  return out;
}
const args = (over: Partial<WeightObserverArgs>): WeightObserverArgs => ({
  num_bits: 4, symmetric: true, strategy: 'group', group_size: 16, observer: 'mse', observer_kwargs: {}, ...over,
});

/** Σ|fq(x) − x|^2.4 of one row slice quantized from (p·min, p·max), for p = 1 − i/100, i < 20 */
function errorCurve(slice: Float32Array, a: WeightObserverArgs): { p: number; err: number }[] {
  const lo = Math.min(...slice);
  const hi = Math.max(...slice);
  const one = { ...a, strategy: 'tensor', group_size: null } as const;
  return Array.from({ length: 20 }, (_, i) => {
    const p = Math.fround(1 - i / 100);
    const qp = computeQParams(Float32Array.of(Math.fround(lo * p)), Float32Array.of(Math.fround(hi * p)), one);
    const fq = fakeQuantizeWeight(slice, 1, slice.length, qp, one);
    let err = 0;
    for (let e = 0; e < slice.length; e++) err += Math.abs(Math.fround((fq[e] as number) - (slice[e] as number))) ** 2.4;
    return { p, err };
  });
}
const firstArgmin = (curve: { err: number }[]) => curve.reduce((best, c, i) => (c.err < (curve[best] as { err: number }).err ? i : best), 0);

const rt = new Runtime({ device: 'cpu', threads: 1 });
afterAll(() => rt.close());

describe('observer options', () => {
  test('mse defaults are llm-compressor\'s: maxshrink 0.2, patience 5, grid 100, norm 2.4', () => {
    expect(mseOptions()).toEqual({ maxshrink: 0.2, patience: 5, grid: 100, norm: 2.4, expand: 1 });
    expect(mseOptions({ grid: 50, norm: 2 })).toMatchObject({ grid: 50, norm: 2 });
  });
  test('bad kwargs are typed errors', () => {
    expect(() => mseOptions({ grid: 'x' })).toThrow(ObserverError);
    expect(() => mseOptions({ patience: 0 })).toThrow(/out of range/);
  });
  test('observer names map to the two weight algorithms', () => {
    expect(observerKind('minmax')).toBe('minmax');
    expect(observerKind('static_minmax')).toBe('minmax');
    expect(observerKind('memoryless_mse')).toBe('mse');
    expect(observerKind(null)).toBe('minmax');
  });
});

describe('minmax observer', () => {
  test('returns the plain min and max of each slice', async () => {
    const w = gaussian(4 * 40, 1);
    const a = args({ observer: 'minmax' });
    expect(await observeWeight(w, 4, 40, a)).toEqual(weightMinMax(w, 4, 40, a));
  });
});

describe('mse observer', () => {
  test('picks, per group, the first shrink factor with the lowest error when patience never stops it', async () => {
    const rows = 6;
    const cols = 40; // groups of 16, 16 and a partial 8
    const w = gaussian(rows * cols, 2, 6);
    const a = args({ observer_kwargs: { patience: 1000 } });
    const got = await mseMinMax(w, rows, cols, a);
    const plain = weightMinMax(w, rows, cols, a);
    let shrunk = 0;
    for (let r = 0; r < rows; r++) {
      for (let g = 0; g < 3; g++) {
        const slice = w.slice(r * cols + g * 16, r * cols + Math.min(cols, (g + 1) * 16));
        const best = errorCurve(slice, a)[firstArgmin(errorCurve(slice, a))] as { p: number };
        const k = r * 3 + g;
        expect(got.min[k]).toBe(Math.fround((plain.min[k] as number) * best.p));
        expect(got.max[k]).toBe(Math.fround((plain.max[k] as number) * best.p));
        if (best.p < 1) shrunk++;
      }
    }
    expect(shrunk).toBeGreaterThan(0);
  });

  test('keeps the plain range when quantization is already lossless', async () => {
    const scale = 7 / 7.5;
    const w = Float32Array.from({ length: 32 }, (_, i) => Math.fround(((i % 15) - 7) * scale));
    const a = args({ group_size: 32, strategy: 'channel' });
    expect(await mseMinMax(w, 1, 32, { ...a, group_size: null })).toEqual(weightMinMax(w, 1, 32, { strategy: 'channel', group_size: null }));
  });

  test('patience stops the search after that many steps without improvement', async () => {
    // find a slice whose first improvement over p = 1 comes only at the 4th step
    const a = args({ group_size: 16 });
    let slice: Float32Array | undefined;
    for (let seed = 1; seed < 5000 && !slice; seed++) {
      const s = gaussian(16, seed, 1);
      const c = errorCurve(s, a).map((x) => x.err);
      if ((c[1] as number) >= (c[0] as number) && (c[2] as number) >= (c[0] as number) && (c[3] as number) < (c[0] as number)) slice = s;
    }
    expect(slice).toBeDefined();
    const s = slice as Float32Array;
    const plain = weightMinMax(s, 1, 16, a);
    const early = await mseMinMax(s, 1, 16, { ...a, observer_kwargs: { patience: 2 } });
    const late = await mseMinMax(s, 1, 16, { ...a, observer_kwargs: { patience: 5 } });
    expect(early).toEqual(plain);
    expect(Math.abs(late.max[0] as number) + Math.abs(late.min[0] as number)).toBeLessThan(Math.abs(plain.max[0] as number) + Math.abs(plain.min[0] as number));
  });

  test('tensor strategy scores one scale over the whole weight', async () => {
    const w = gaussian(8 * 24, 3, 2);
    const a = args({ strategy: 'tensor', group_size: null, symmetric: false, observer_kwargs: { patience: 1000 } });
    const got = await mseMinMax(w, 8, 24, a);
    const best = errorCurve(w, a)[firstArgmin(errorCurve(w, a))] as { p: number };
    const plain = weightMinMax(w, 8, 24, a);
    expect(Array.from(got.max)).toEqual([Math.fround((plain.max[0] as number) * best.p)]);
  });

  test('onnxruntime evaluation chooses the same ranges as the JS reference', async () => {
    for (const symmetric of [true, false]) {
      for (const [strategy, group_size] of [['group', 128], ['channel', null], ['tensor', null]] as const) {
        const w = gaussian(24 * 300, 4, 40);
        const a = args({ symmetric, strategy, group_size });
        const js = await mseMinMax(w, 24, 300, a);
        const ort = await mseMinMax(w, 24, 300, a, { runtime: rt, chunk: 7 });
        expect(ort).toEqual(js);
      }
    }
  });

  test('refuses large weights without a runtime', async () => {
    const w = new Float32Array(JS_MSE_LIMIT + 16);
    await expect(mseMinMax(w, 16, w.length / 16, args({}))).rejects.toThrow(/needs an onnxruntime Runtime/);
  });
});
