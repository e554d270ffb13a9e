// Vector-Jacobian rules of ops that only move data: the gradient is moved back the same way (inverse
// permutation, reshape to the input's shape, pad a slice back into place, split a concatenation, scatter-add
// gathered rows). Shapes come from static inference when they are known and from Shape nodes otherwise.

import type { Value } from '../graph.js';
import { sliceRange } from '../shape-dims.js';
import { AutodiffError, type Backward, type RuleArgs, type VjpRule } from './backward.js';

const FAR_END = Number.MAX_SAFE_INTEGER;

const reshapeBack: VjpRule = { diff: [0], vjp: (b, a) => [b.reshapeLike(a.gy[0]!, a.x[0]!)] };

function attrInt(a: RuleArgs, name: string, fallback: number): number {
  const v = a.node.attrs[name];
  return v?.kind === 'int' ? v.value : fallback;
}

function numbers(v: readonly unknown[] | undefined): number[] | undefined {
  return v !== undefined && v.every((d) => typeof d === 'number') ? (v as number[]) : undefined;
}

function transposeRule(b: Backward, a: RuleArgs): Value[] {
  const p = a.node.attrs.perm;
  const gy = a.gy[0]!;
  if (p?.kind !== 'ints') return [b.op('Transpose', [gy], gy.dtype)];
  const inverse = new Array<number>(p.value.length);
  p.value.forEach((axis, i) => (inverse[axis] = i));
  return [b.op('Transpose', [gy], gy.dtype, { perm: inverse })];
}

/** the slice is padded back with zeros into the input's shape (unit steps only) */
function sliceRule(b: Backward, a: RuleArgs): Value[] {
  const [x, startsV, endsV, axesV, stepsV] = a.x;
  const gy = a.gy[0]!;
  const steps = stepsV ? numbers(b.constValue(stepsV)) : undefined;
  if (stepsV && (!steps || steps.some((s) => s !== 1))) {
    const found = steps ? `[${steps.join(', ')}]` : 'run-time steps';
    throw new AutodiffError('autodiff-unsupported-op', `Slice "${a.node.name}": the gradient needs constant unit steps; found ${found}`);
  }
  const starts = numbers(b.constValue(startsV));
  const ends = numbers(b.constValue(endsV));
  const axes = axesV ? numbers(b.constValue(axesV)) : starts?.map((_, i) => i);
  const xs = b.shape(x);
  if (starts && ends && axes && xs) {
    const ranges = axes.map((ax, i) => sliceRange(xs[ax < 0 ? ax + xs.length : ax] ?? null, starts[i]!, ends[i]!, 1));
    if (ranges.every((r) => r !== null)) {
      const dims = axes.map((ax) => xs[ax < 0 ? ax + xs.length : ax] as number);
      const pads = [...ranges.map((r) => r![0]), ...ranges.map((r, i) => dims[i]! - r![0] - r![1])];
      return [b.op('Pad', [gy, b.ints(pads), undefined, b.ints(axes)], gy.dtype)];
    }
  }
  // run time: clamp starts/ends against the input's dims exactly as Slice does
  const axesT = axes ? b.ints(axes) : axesV;
  if (!axesT) throw new AutodiffError('autodiff-unknown-rank', `Slice "${a.node.name}": the gradient needs constant or explicit axes`);
  const i64 = (v: Value): Value => b.castTo(v, 'int64');
  const dims = b.op('Gather', [b.op('Shape', [x!], 'int64'), axesT], 'int64', { axis: 0 });
  const zero = b.ints([0]);
  const clamp = (v: Value): Value => {
    const wrapped = b.op('Where', [b.op('Less', [v, zero], 'bool'), b.op('Add', [v, dims], 'int64'), v], 'int64');
    return b.op('Min', [b.op('Max', [wrapped, zero], 'int64'), dims], 'int64');
  };
  const s = clamp(i64(startsV!));
  const e = b.op('Max', [clamp(i64(endsV!)), s], 'int64');
  const pads = b.op('Concat', [s, b.op('Sub', [dims, e], 'int64')], 'int64', { axis: 0 });
  return [b.op('Pad', [gy, pads, undefined, axesT], gy.dtype)];
}

function concatRule(b: Backward, a: RuleArgs): (Value | undefined)[] {
  const axis = attrInt(a, 'axis', 0);
  const gy = a.gy[0]!;
  const sizes = a.x.map((x) => {
    const s = b.shape(x);
    return s ? s[axis < 0 ? axis + s.length : axis] : undefined;
  });
  const split = sizes.every((d) => typeof d === 'number')
    ? b.ints(sizes as number[])
    : b.op('Concat', a.x.map((x) => b.op('Shape', [x!], 'int64', axis === -1 ? { start: -1 } : { start: axis, end: axis + 1 })), 'int64', { axis: 0 });
  return b.g.opN('Split', [gy, split], a.x.length, { axis }, { dtype: gy.dtype });
}

function splitRule(b: Backward, a: RuleArgs): Value[] {
  const parts = a.y.map((y, k) => a.gy[k] ?? b.filledLike(y, 0));
  return [b.op('Concat', parts, a.x[0]!.dtype, { axis: attrInt(a, 'axis', 0) })];
}

/** embedding-style Gather along axis 0: gathered rows are scatter-added back (negative indices unsupported) */
function gatherRule(b: Backward, a: RuleArgs): Value[] {
  const [x, idx] = [a.x[0]!, a.x[1]!];
  const axis = attrInt(a, 'axis', 0);
  if (axis !== 0 && axis !== -b.rank(x, 'Gather')) {
    throw new AutodiffError('autodiff-unsupported-op', `Gather "${a.node.name}": the gradient is implemented for axis 0 only; found axis ${axis}`);
  }
  const index = b.op('Unsqueeze', [b.castTo(idx, 'int64'), b.ints([-1])], 'int64');
  return [b.op('ScatterND', [b.filledLike(x, 0), index, a.gy[0]!], x.dtype, { reduction: 'add' })];
}

/** constant-mode Pad with constant non-negative pads: the gradient is the slice of the unpadded region */
function padRule(b: Backward, a: RuleArgs): Value[] {
  const [x, padsV, , axesV] = a.x;
  const mode = a.node.attrs.mode;
  const pads = numbers(b.constValue(padsV));
  const xs = b.shape(x);
  if ((mode?.kind === 'string' && mode.value !== 'constant') || !pads || pads.some((p) => p < 0) || !xs) {
    throw new AutodiffError('autodiff-unsupported-op', `Pad "${a.node.name}": the gradient needs constant mode, constant non-negative pads and a known rank`);
  }
  const axes = axesV ? numbers(b.constValue(axesV)) : xs.map((_, i) => i);
  if (!axes) throw new AutodiffError('autodiff-unsupported-op', `Pad "${a.node.name}": the gradient needs constant axes`);
  const n = axes.length;
  const begins = pads.slice(0, n);
  const ends = axes.map((ax, i) => {
    const d = xs[ax < 0 ? ax + xs.length : ax];
    return typeof d === 'number' ? begins[i]! + d : pads[n + i]! > 0 ? -pads[n + i]! : FAR_END;
  });
  const gy = a.gy[0]!;
  return [b.op('Slice', [gy, b.ints(begins), b.ints(ends), b.ints(axes)], gy.dtype)];
}

export const SHAPE_RULES: Readonly<Record<string, VjpRule>> = {
  Transpose: { diff: [0], vjp: transposeRule },
  Reshape: reshapeBack,
  Unsqueeze: reshapeBack,
  Squeeze: reshapeBack,
  Flatten: reshapeBack,
  Expand: { diff: [0], vjp: (b, a) => [b.reduceTo(a.gy[0]!, b.shape(a.y[0]), a.x[0]!)] },
  Slice: { diff: [0], vjp: sliceRule },
  Concat: { vjp: concatRule },
  Split: { diff: [0], vjp: splitRule },
  Gather: { diff: [0], vjp: gatherRule },
  Pad: { diff: [0], vjp: padRule },
};
