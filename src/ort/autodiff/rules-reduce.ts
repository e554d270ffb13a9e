// Vector-Jacobian rules of reductions and softmax. A reduction's gradient is broadcast back over the reduced
// axes (re-inserted first when keepdims=0): ReduceSum copies it, ReduceMean also divides by the count, and
// ReduceMax/ReduceMin route it to the positions equal to the result, split evenly between ties.

import type { Value } from '../graph.js';
import type { Backward, RuleArgs, VjpRule } from './backward.js';

interface Axes {
  /** every axis is reduced */
  all: boolean;
  /** the op is an identity (empty axes with noop_with_empty_axes=1) */
  noop: boolean;
  /** the axes as an int64 tensor, attribute or input */
  tensor?: Value;
  known?: readonly number[];
}

function intAttr(a: RuleArgs, name: string, fallback: number): number {
  const v = a.node.attrs[name];
  return v?.kind === 'int' ? v.value : fallback;
}

function reducedAxes(b: Backward, a: RuleArgs): Axes {
  const attr = a.node.attrs.axes;
  const input = a.x[1];
  let known: readonly number[] | undefined;
  let tensor: Value | undefined;
  if (attr?.kind === 'ints') [known, tensor] = [attr.value, b.ints(attr.value)];
  else if (input) {
    const v = b.constValue(input);
    known = v?.every((d) => typeof d === 'number') ? (v as number[]) : undefined;
    tensor = input;
  }
  if (!tensor) return { all: true, noop: false };
  if (known?.length === 0) {
    return intAttr(a, 'noop_with_empty_axes', 0) === 1 ? { all: false, noop: true } : { all: true, noop: false };
  }
  return { all: false, noop: false, tensor, ...(known ? { known } : {}) };
}

/** `v` of the reduced output's shape, with the reduced axes present as size 1 (or a scalar for reduce-all) */
function keepDims(b: Backward, a: RuleArgs, axes: Axes, v: Value): Value {
  if (axes.all || intAttr(a, 'keepdims', 1) === 1) return v;
  return b.op('Unsqueeze', [v, axes.tensor], v.dtype);
}

/** how many elements each output element averages, as a scalar of `dtype` */
function count(b: Backward, a: RuleArgs, axes: Axes): Value {
  const [x, y] = [a.x[0]!, a.y[0]!];
  const xs = b.shape(x);
  if (xs) {
    const dims = axes.all ? xs : axes.known?.map((ax) => xs[ax < 0 ? ax + xs.length : ax] ?? null);
    if (dims?.every((d) => typeof d === 'number')) return b.scalar((dims as number[]).reduce((p, d) => p * d, 1), x.dtype);
  }
  const sizes = b.op('Div', [b.op('Size', [x], 'int64'), b.op('Size', [y], 'int64')], 'int64');
  return b.castTo(sizes, x.dtype);
}

function reduceRule(kind: 'sum' | 'mean' | 'extremum'): VjpRule {
  return {
    diff: [0],
    vjp(b, a) {
      const axes = reducedAxes(b, a);
      const [x, y, gy] = [a.x[0]!, a.y[0]!, a.gy[0]!];
      if (axes.noop) return [gy];
      const gk = keepDims(b, a, axes, gy);
      if (kind === 'sum') return [b.op('Expand', [gk, b.shapeOf(x)], gy.dtype)];
      if (kind === 'mean') return [b.op('Expand', [b.div(gk, count(b, a, axes)), b.shapeOf(x)], gy.dtype)];
      const hit = b.castTo(b.op('Equal', [x, keepDims(b, a, axes, y)], 'bool'), gy.dtype);
      const ties = b.op('ReduceSum', axes.all ? [hit] : [hit, axes.tensor], gy.dtype, { keepdims: 1 });
      return [b.mul(hit, b.div(gk, ties))];
    },
  };
}

export const REDUCE_RULES: Readonly<Record<string, VjpRule>> = {
  ReduceSum: reduceRule('sum'),
  ReduceMean: reduceRule('mean'),
  ReduceMax: reduceRule('extremum'),
  ReduceMin: reduceRule('extremum'),
  // dx = y·(gy − Σ gy·y) along the softmax axis
  Softmax: {
    vjp(b, a) {
      const [y, gy] = [a.y[0]!, a.gy[0]!];
      const dot = b.op('ReduceSum', [b.mul(gy, y), b.ints([intAttr(a, 'axis', -1)])], gy.dtype, { keepdims: 1 });
      return [b.mul(y, b.sub(gy, dot))];
    },
  },
  // dx = gy − softmax(x)·Σ gy, with softmax(x) = exp(y)
  LogSoftmax: {
    vjp(b, a) {
      const [y, gy] = [a.y[0]!, a.gy[0]!];
      const total = b.op('ReduceSum', [gy, b.ints([intAttr(a, 'axis', -1)])], gy.dtype, { keepdims: 1 });
      return [b.sub(gy, b.mul(b.op('Exp', [y], y.dtype), total))];
    },
  },
};
