import { afterAll, describe, expect, test } from 'vitest';
import { roundHalfEven } from '../../src/quant/round.js';
import type { Graph, Value } from '../../src/ort/graph.js';
import { Runtime } from '../../src/ort/session.js';
import { checkGradients, f64, type GradCase, type InputSpec } from './autodiff-harness.js';

const rt = new Runtime({ device: 'cpu', threads: 1 });
afterAll(() => rt.close());

// auto-round's quant_tensor_asym / quant_tensor_sym (auto_round/data_type/int.py) as ONNX ops, per row of w
const [ROWS, GROUP, BITS] = [3, 8, 4];
const MAXQ = 2 ** BITS - 1;

interface QuantValues { w: Value; v: Value; minScale: Value; maxScale: Value }

function rowRange(g: Graph, q: QuantValues): [Value, Value] {
  const wminRaw = g.op('Clip', [g.op('ReduceMin', [q.w, g.ints([1])], { keepdims: 0 }), undefined, f64(g, 0)]);
  const wmaxRaw = g.op('Clip', [g.reduceMax(q.w, [1], false), f64(g, 0)]);
  const [lo, hi] = [g.mul(wminRaw, q.minScale), g.mul(wmaxRaw, q.maxScale)];
  return [g.op('Min', [hi, lo]), g.op('Max', [hi, lo])];
}

/** both bounds 0 → [−1, 1], as auto-round does */
function widenEmpty(g: Graph, wmin: Value, wmax: Value): [Value, Value] {
  const isZero = (x: Value): Value => g.op('Equal', [x, f64(g, 0)], {}, { dtype: 'bool' });
  const empty = g.op('And', [isZero(wmin), isZero(wmax)], {}, { dtype: 'bool' });
  return [g.op('Where', [empty, f64(g, -1), wmin], {}, { dtype: 'float64' }), g.op('Where', [empty, f64(g, 1), wmax], {}, { dtype: 'float64' })];
}

function fakeQuant(g: Graph, q: QuantValues, scale: Value, zp: Value, round: boolean): Value {
  const r = (x: Value): Value => (round ? g.op('Round', [x]) : x);
  const s = g.op('Unsqueeze', [scale, g.ints([-1])]);
  const z = g.op('Unsqueeze', [zp, g.ints([-1])]);
  const codes = g.op('Clip', [g.add(r(g.add(g.div(q.w, s), q.v)), z), f64(g, 0), f64(g, MAXQ)]);
  return g.mul(s, g.sub(codes, z));
}

function quantAsym(g: Graph, q: QuantValues, round: boolean): Value {
  const [wmin, wmax] = widenEmpty(g, ...rowRange(g, q));
  const scale = g.op('Clip', [g.div(g.sub(wmax, wmin), f64(g, MAXQ)), f64(g, 1e-5)]);
  const zp0 = g.div(g.op('Neg', [wmin]), scale);
  return fakeQuant(g, q, scale, round ? g.op('Round', [zp0]) : zp0, round);
}

function quantSym(g: Graph, q: QuantValues, round: boolean): Value {
  const [wmin, wmax] = rowRange(g, q);
  const wmaxNew = g.op('Max', [g.op('Abs', [wmin]), wmax]);
  const neg = g.op('Less', [wmin, f64(g, 0)], {}, { dtype: 'bool' });
  const [lo, hi] = widenEmpty(g, g.op('Where', [neg, g.op('Neg', [wmaxNew]), wmin], {}, { dtype: 'float64' }), wmaxNew);
  const scale = g.op('Clip', [g.div(g.sub(hi, lo), f64(g, MAXQ)), f64(g, 1e-5)]);
  const zp = g.op('Expand', [f64(g, (MAXQ + 1) / 2), g.op('Shape', [scale], {}, { dtype: 'int64' })]);
  return fakeQuant(g, q, scale, zp, round);
}

// row 0 leans positive, row 1 negative, so both bounds win the symmetric max(|min|, max) somewhere
const W = Array.from({ length: ROWS * GROUP }, (_, i) => Math.sin(i * 1.37) * 0.8 + [0.2, -0.3, 0][Math.floor(i / GROUP)]!);
const inputs = (): Record<string, InputSpec> => ({
  w: { shape: [ROWS, GROUP], data: W, wrt: false },
  x: { shape: [2, GROUP], wrt: false },
  v: { shape: [ROWS, GROUP], range: [-0.5, 0.5] },
  minScale: { shape: [ROWS], range: [0.8, 1] },
  maxScale: { shape: [ROWS], range: [0.8, 1] },
});
const linearOf = (quant: typeof quantAsym, round: boolean): GradCase => ({
  inputs: inputs(),
  build: (g, x) => g.matmul(x.x!, g.transpose(quant(g, { w: x.w!, v: x.v!, minScale: x.minScale!, maxScale: x.maxScale! }, round), [1, 0])),
});

describe('gradients of the AutoRound quantizer', () => {
  for (const [name, quant] of [['asymmetric', quantAsym], ['symmetric', quantSym]] as const) {
    test(`every op of the ${name} quantizer has a rule: without rounding its gradients match finite differences`, async () => {
      const check = await checkGradients(rt, linearOf(quant, false));
      expect(Object.keys(check.relErr).sort()).toEqual(['maxScale', 'minScale', 'v']);
      for (const [input, err] of Object.entries(check.relErr)) expect(err, input).toBeLessThan(1e-6);
    });

    test(`with rounding, the ${name} quantizer passes gradients to V and both scale factors`, async () => {
      const check = await checkGradients(rt, linearOf(quant, true));
      for (const input of ['v', 'minScale', 'maxScale']) {
        const g = check.analytic[input]!;
        expect(g.every(Number.isFinite), input).toBe(true);
        expect(g.some((x) => x !== 0), input).toBe(true);
      }
    });
  }

  test('dL/dV is the straight-through derivative: upstream · scale where the code is not clipped', async () => {
    const check = await checkGradients(rt, {
      inputs: inputs(),
      build: (g, x) => quantAsym(g, { w: x.w!, v: x.v!, minScale: x.minScale!, maxScale: x.maxScale! }, true),
    });
    const [v, a, b] = ['v', 'minScale', 'maxScale'].map((k) => check.feeds[k]!.data as Float64Array);
    let clipped = 0;
    for (let row = 0; row < ROWS; row++) {
      const ws = W.slice(row * GROUP, (row + 1) * GROUP);
      const lo = Math.min(...ws, 0) * a![row]!;
      const hi = Math.max(...ws, 0) * b![row]!;
      const scale = Math.max((Math.max(lo, hi) - Math.min(lo, hi)) / MAXQ, 1e-5);
      const zp = roundHalfEven(-Math.min(lo, hi) / scale);
      for (let j = 0; j < GROUP; j++) {
        const i = row * GROUP + j;
        const code = roundHalfEven(W[i]! / scale + v![i]!) + zp;
        const inside = code >= 0 && code <= MAXQ;
        clipped += inside ? 0 : 1;
        expect(check.analytic.v![i]).toBeCloseTo(inside ? check.seed[i]! * scale : 0, 12);
      }
    }
    expect(clipped).toBeGreaterThan(0);
  });
});
