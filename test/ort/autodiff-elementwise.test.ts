import { afterAll, describe, expect, test } from 'vitest';
import type { Graph, Value } from '../../src/ort/graph.js';
import { Runtime } from '../../src/ort/session.js';
import { checkGradients, f64, type GradCase } from './autodiff-harness.js';

const rt = new Runtime({ device: 'cpu', threads: 1 });
afterAll(() => rt.close());

const pos = [0.3, 2] as const;
const un = (op: string, range?: readonly [number, number]): GradCase => ({
  inputs: { x: { shape: [3, 4], ...(range ? { range } : {}) } },
  build: (g, x) => g.op(op, [x.x!]),
});
const bin = (op: string, a: readonly number[], b: readonly number[], range?: readonly [number, number]): GradCase => ({
  inputs: { a: { shape: a, ...(range ? { range } : {}) }, b: { shape: b, ...(range ? { range } : {}) } },
  build: (g, x) => g.op(op, [x.a!, x.b!]),
});

const CASES: Record<string, GradCase> = {
  'Add': bin('Add', [2, 3], [2, 3]),
  'Add broadcasting a row over a batch': bin('Add', [2, 3, 4], [4]),
  'Add broadcasting size-1 axes on both sides': bin('Add', [2, 1, 4], [3, 1]),
  'Add of a scalar': bin('Add', [], [2, 3]),
  'Sub broadcasting': bin('Sub', [3, 1], [2, 3, 4]),
  'Mul broadcasting': bin('Mul', [2, 3, 4], [1, 3, 1]),
  'Mul of a value by itself': { inputs: { x: { shape: [2, 3] } }, build: (g, x) => g.mul(x.x!, x.x!) },
  'Div broadcasting': bin('Div', [2, 3, 4], [3, 1], pos),
  'Div by itself': { inputs: { x: { shape: [5], range: pos } }, build: (g, x) => g.add(g.div(x.x!, x.x!), x.x!) },
  'Neg': un('Neg'),
  'Pow with a constant exponent 2': { inputs: { x: { shape: [3, 4] } }, build: (g, x) => g.op('Pow', [x.x!, f64(g, 2)]) },
  'Pow with a constant exponent -1.5': { inputs: { x: { shape: [3, 4], range: pos } }, build: (g, x) => g.op('Pow', [x.x!, f64(g, -1.5)]) },
  'Pow with a differentiated exponent': bin('Pow', [2, 3], [3], pos),
  'Sqrt': un('Sqrt', pos),
  'Reciprocal': un('Reciprocal', pos),
  'Exp': un('Exp'),
  'Log': un('Log', pos),
  'Sigmoid': un('Sigmoid', [-3, 3]),
  'Tanh': un('Tanh'),
  'Relu': { inputs: { x: { shape: [6], data: [-1, -0.4, 0.2, 0.9, -2, 1.5] } }, build: (g, x) => g.op('Relu', [x.x!]) },
  'Abs': { inputs: { x: { shape: [6], data: [-1, -0.4, 0.2, 0.9, -2, 1.5] } }, build: (g, x) => g.op('Abs', [x.x!]) },
  // float32: onnxruntime fuses x·sigmoid(x) into QuickGelu, which has no float64 kernel
  'SiLU as x·sigmoid(x) in float32': { inputs: { x: { shape: [3, 4], range: [-3, 3], dtype: 'float32' } }, build: (g, x) => g.mul(x.x!, g.op('Sigmoid', [x.x!])) },
  'Identity': un('Identity'),
  'Max of two inputs with broadcasting': { inputs: { a: { shape: [2, 3] }, b: { shape: [3] } }, build: (g, x) => g.op('Max', [x.a!, x.b!]) },
  'Min of three inputs': { inputs: { a: { shape: [4] }, b: { shape: [4] }, c: { shape: [4] } }, build: (g, x) => g.op('Min', [x.a!, x.b!, x.c!]) },
  'Sum of three inputs with broadcasting': { inputs: { a: { shape: [2, 3] }, b: { shape: [3] }, c: { shape: [] } }, build: (g, x) => g.op('Sum', [x.a!, x.b!, x.c!]) },
  'Where with a broadcast condition and branches': {
    inputs: { c: { shape: [3, 1], dtype: 'bool', data: [1, 0, 1] }, a: { shape: [3, 4] }, b: { shape: [4] } },
    build: (g, x) => g.op('Where', [x.c!, x.a!, x.b!], {}, { dtype: 'float64' }),
  },
  'Clip between two constant bounds': {
    inputs: { x: { shape: [8], data: [-0.9, -0.6, -0.3, -0.1, 0.15, 0.35, 0.7, 0.95] } },
    build: (g, x) => g.op('Clip', [x.x!, f64(g, -0.5), f64(g, 0.5)]),
  },
  'Clip with differentiated bounds': {
    inputs: { x: { shape: [8], data: [-0.9, -0.6, -0.3, -0.1, 0.15, 0.35, 0.7, 0.95] }, lo: { shape: [], data: [-0.5] }, hi: { shape: [], data: [0.5] } },
    build: (g, x) => g.op('Clip', [x.x!, x.lo!, x.hi!]),
  },
  'Clip with only a max bound': {
    inputs: { x: { shape: [6], data: [-0.9, -0.6, 0.1, 0.45, 0.7, 0.95] }, hi: { shape: [], data: [0.5] } },
    build: (g, x) => g.op('Clip', [x.x!, undefined, x.hi!]),
  },
  'Cast from float64 to float32 and back': {
    inputs: { x: { shape: [3, 4] } },
    build: (g, x) => g.mul(g.cast(g.cast(x.x!, 'float32'), 'float64'), x.x!),
  },
};

describe('gradients of elementwise ops', () => {
  for (const [name, c] of Object.entries(CASES)) {
    test(`${name} agrees with central differences`, async () => {
      const coarse = name.startsWith('Cast') || name.includes('float32');
      const h = coarse ? 1e-2 : 1e-6;
      const tol = coarse ? 1e-3 : 1e-6;
      const check = await checkGradients(rt, c, { h });
      for (const [input, err] of Object.entries(check.relErr)) expect(err, input).toBeLessThan(tol);
    });
  }

  test('a wrong rule is caught: the check fails for a gradient that is off by a factor', async () => {
    const c: GradCase = { inputs: { x: { shape: [4] } }, build: (g, x) => g.mul(x.x!, x.x!) };
    const check = await checkGradients(rt, c);
    const wrong = check.analytic.x!.map((v) => v * 1.01);
    const numeric = check.numeric.x!;
    const err = Math.max(...[...numeric].map(([i, n]) => Math.abs((wrong[i] ?? 0) - n))) / Math.max(...[...numeric.values()].map(Math.abs));
    expect(err).toBeGreaterThan(1e-3);
  });
});

/** −0 and +0 compare equal here */
const plain = (a: Float64Array): number[] => [...a].map((v) => v + 0);

/** the upstream gradient r of a one-input case, with the analytic gradient for x */
async function upstream(build: (g: Graph, x: Value) => Value, data: number[]): Promise<{ r: Float64Array; gx: Float64Array; x: number[] }> {
  const check = await checkGradients(rt, { inputs: { x: { shape: [data.length], data } }, build: (g, x) => build(g, x.x!) });
  return { r: check.seed, gx: check.analytic.x!, x: data };
}

describe('straight-through and piecewise rules', () => {
  test('Round passes the upstream gradient through unchanged (straight-through estimator)', async () => {
    const { r, gx } = await upstream((g, x) => g.op('Round', [x]), [-1.7, -0.5, 0.2, 0.5, 1.49, 2.5]);
    expect([...gx]).toEqual([...r]);
  });

  test('Round inside a quantizer passes the gradient to the rounding offset', async () => {
    // wq = (clip(round(w/s + v), -8, 7)) · s: dwq/dv = s where the code is inside the range, else 0
    const w = [0.31, -0.77, 0.05, 2.4, -2.6];
    const check = await checkGradients(rt, {
      inputs: { w: { shape: [5], data: w, wrt: false }, v: { shape: [5], data: [0.1, -0.2, 0.3, 0, 0.4] } },
      build: (g, x) => {
        const s = f64(g, 0.25);
        return g.mul(g.op('Clip', [g.op('Round', [g.add(g.div(x.w!, s), x.v!)]), f64(g, -8), f64(g, 7)]), s);
      },
    });
    const expected = w.map((wi, i) => {
      const z = wi / 0.25 + [0.1, -0.2, 0.3, 0, 0.4][i]!;
      return z >= -8 && z <= 7 ? 0.25 * check.seed[i]! : 0;
    });
    [...check.analytic.v!].forEach((a, i) => expect(a).toBeCloseTo(expected[i]!, 12));
    expect(expected.filter((e) => e === 0)).toHaveLength(2);
  });

  test('Clip passes the gradient inside [min, max] inclusive and zero outside', async () => {
    const data = [-0.9, -0.5, -0.2, 0.3, 0.5, 0.8];
    const { r, gx } = await upstream((g, x) => g.op('Clip', [x, f64(g, -0.5), f64(g, 0.5)]), data);
    expect(plain(gx)).toEqual(data.map((v, i) => (v >= -0.5 && v <= 0.5 ? r[i] : 0)));
  });

  test('Max gives the gradient to the larger input and splits ties evenly', async () => {
    const check = await checkGradients(rt, {
      inputs: { a: { shape: [3], data: [1, 2, 3] }, b: { shape: [3], data: [2, 2, 1] } },
      build: (g, x) => g.op('Max', [x.a!, x.b!]),
    });
    const r = check.seed;
    expect(plain(check.analytic.a!)).toEqual([0, r[1]! / 2, r[2]!]);
    expect(plain(check.analytic.b!)).toEqual([r[0]!, r[1]! / 2, 0]);
  });

  test('Sign and comparisons contribute no gradient', async () => {
    const data = [-1, -0.3, 0.4, 2];
    const { gx } = await upstream((g, x) => g.op('Sign', [x]), data);
    expect(plain(gx)).toEqual([0, 0, 0, 0]);
    // y = x · (x > 0): only the direct factor carries a gradient
    const masked = await upstream((g, x) => g.mul(x, g.cast(g.op('Greater', [x, f64(g, 0)], {}, { dtype: 'bool' }), 'float64')), data);
    expect(plain(masked.gx)).toEqual(data.map((v, i) => (v > 0 ? masked.r[i] : 0)));
  });
});
