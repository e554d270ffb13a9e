// Vector-Jacobian rules of elementwise ops. Binary ops broadcast numpy-style, so each input's contribution is
// summed back to that input's shape with `reduceTo`. Rules reuse the forward Values (inputs and outputs)
// rather than recomputing them: Exp's gradient multiplies by its output, Sqrt's divides by it.

import type { Value } from '../graph.js';
import type { Backward, RuleArgs, VjpRule } from './backward.js';

type Grads = (Value | undefined)[];

/** gy summed back to input `i`'s shape */
const back = (b: Backward, a: RuleArgs, i: number, grad: Value): Value => b.reduceTo(grad, b.shape(a.y[0]), a.x[i]!);

const unary = (f: (b: Backward, x: Value, y: Value, gy: Value) => Value): VjpRule => ({
  diff: [0],
  vjp: (b, a) => [f(b, a.x[0]!, a.y[0]!, a.gy[0]!)],
});

const identity = unary((_b, _x, _y, gy) => gy);

function powRule(b: Backward, a: RuleArgs): Grads {
  const [x, p] = [a.x[0]!, a.x[1]!];
  const [y, gy] = [a.y[0]!, a.gy[0]!];
  const out: Grads = [];
  const pv = b.constValue(p);
  if (a.needs[0]) {
    let dydx: Value;
    if (pv?.length === 1 && typeof pv[0] === 'number') {
      const e = pv[0];
      dydx = e === 2 ? b.mul(x, b.scalar(2, x.dtype)) : b.mul(b.op('Pow', [x, b.scalar(e - 1, x.dtype)], x.dtype), b.scalar(e, x.dtype));
    } else {
      const pc = b.castTo(p, x.dtype);
      dydx = b.mul(b.op('Pow', [x, b.sub(pc, b.scalar(1, x.dtype))], x.dtype), pc);
    }
    out[0] = back(b, a, 0, b.mul(gy, dydx));
  }
  if (a.needs[1]) out[1] = b.castTo(back(b, a, 1, b.mul(gy, b.mul(y, b.op('Log', [x], x.dtype)))), p.dtype);
  return out;
}

/** x passes where min ≤ x ≤ max (inclusive, as torch.clamp); a bound receives the gradient where it clipped */
function clipRule(b: Backward, a: RuleArgs): Grads {
  const [x, lo, hi] = a.x;
  const gy = a.gy[0]!;
  const cmp = (op: string, l: Value, r: Value): Value => b.op(op, [l, r], 'bool');
  const out: Grads = [];
  if (a.needs[0]) {
    const conds = [lo && cmp('GreaterOrEqual', x!, lo), hi && cmp('LessOrEqual', x!, hi)].filter((c) => c !== undefined);
    const cond = conds.length === 2 ? b.op('And', conds, 'bool') : conds[0];
    out[0] = cond ? b.select(cond, gy) : gy;
  }
  if (a.needs[1] && lo) out[1] = back(b, a, 1, b.select(cmp('Less', x!, lo), gy));
  if (a.needs[2] && hi) out[2] = back(b, a, 2, b.select(cmp('Greater', x!, hi), gy));
  return out;
}

/** elementwise Max/Min: the gradient goes to the inputs equal to the output, split evenly between ties */
function extremumRule(b: Backward, a: RuleArgs): Grads {
  const [y, gy] = [a.y[0]!, a.gy[0]!];
  const hits = a.x.map((x) => b.castTo(b.op('Equal', [x!, y], 'bool'), gy.dtype));
  const count = hits.length === 1 ? undefined : b.sum(hits);
  const share = count ? b.div(gy, count) : gy;
  return a.x.map((_, i) => (a.needs[i] ? back(b, a, i, b.mul(share, hits[i]!)) : undefined));
}

function divRule(b: Backward, a: RuleArgs): Grads {
  // d(a/d)/dd = -(a/d)/d = -y/d, so both contributions share gy/d
  const ga = b.div(a.gy[0]!, a.x[1]!);
  return [
    a.needs[0] ? back(b, a, 0, ga) : undefined,
    a.needs[1] ? b.neg(back(b, a, 1, b.mul(ga, a.y[0]!))) : undefined,
  ];
}

export const ELEMENTWISE_RULES: Readonly<Record<string, VjpRule>> = {
  Add: { vjp: (b, a) => a.x.map((_, i) => (a.needs[i] ? back(b, a, i, a.gy[0]!) : undefined)) },
  Sum: { vjp: (b, a) => a.x.map((_, i) => (a.needs[i] ? back(b, a, i, a.gy[0]!) : undefined)) },
  Sub: {
    vjp: (b, a) => [
      a.needs[0] ? back(b, a, 0, a.gy[0]!) : undefined,
      a.needs[1] ? b.neg(back(b, a, 1, a.gy[0]!)) : undefined,
    ],
  },
  Mul: {
    vjp: (b, a) => [
      a.needs[0] ? back(b, a, 0, b.mul(a.gy[0]!, a.x[1]!)) : undefined,
      a.needs[1] ? back(b, a, 1, b.mul(a.gy[0]!, a.x[0]!)) : undefined,
    ],
  },
  Div: { vjp: divRule },
  Pow: { vjp: powRule },
  Neg: unary((b, _x, _y, gy) => b.neg(gy)),
  Sqrt: unary((b, _x, y, gy) => b.div(b.mul(gy, b.scalar(0.5, gy.dtype)), y)),
  Reciprocal: unary((b, _x, y, gy) => b.neg(b.mul(gy, b.mul(y, y)))),
  Exp: unary((b, _x, y, gy) => b.mul(gy, y)),
  Log: unary((b, x, _y, gy) => b.div(gy, x)),
  Sigmoid: unary((b, _x, y, gy) => b.mul(gy, b.mul(y, b.sub(b.scalar(1, y.dtype), y)))),
  Tanh: unary((b, _x, y, gy) => b.mul(gy, b.sub(b.scalar(1, y.dtype), b.mul(y, y)))),
  Relu: unary((b, x, _y, gy) => b.select(b.op('Greater', [x, b.scalar(0, x.dtype)], 'bool'), gy)),
  Abs: unary((b, x, _y, gy) => b.mul(gy, b.sign(x))),
  Identity: identity,
  Dropout: identity,
  Cast: unary((b, x, _y, gy) => b.castTo(gy, x.dtype)),
  // straight-through estimators: the rounding is treated as the identity
  Round: identity,
  Floor: identity,
  Ceil: identity,
  Clip: { vjp: clipRule },
  Max: { vjp: extremumRule },
  Min: { vjp: extremumRule },
  Where: {
    diff: [1, 2],
    vjp: (b, a) => [
      undefined,
      a.needs[1] ? back(b, a, 1, b.select(a.x[0]!, a.gy[0]!)) : undefined,
      a.needs[2] ? back(b, a, 2, b.select(a.x[0]!, a.gy[0]!, true)) : undefined,
    ],
  },
};
