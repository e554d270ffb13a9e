// Vector-Jacobian rule of MatMul (numpy matmul semantics): dA = dY·Bᵀ and dB = Aᵀ·dY, summed over batch axes
// an operand was broadcast along. The common Linear case, activations [..., k] times a 2-D weight [k, n],
// folds every batch axis into the rows so dB is one Gemm [k, rows]·[rows, n] and no per-batch [.., k, n]
// partial products are ever materialised.

import type { Value } from '../graph.js';
import { broadcastShapes, type SymDim } from '../shape-dims.js';
import type { Backward, RuleArgs, VjpRule } from './backward.js';

function swapLast(b: Backward, v: Value, rank: number): Value {
  const perm = Array.from({ length: rank }, (_, i) => i);
  [perm[rank - 2], perm[rank - 1]] = [rank - 1, rank - 2];
  return b.op('Transpose', [v], v.dtype, { perm });
}

/** `v` [..., d] folded to [rows, d] */
function rows(b: Backward, v: Value, rank: number): Value {
  if (rank === 2) return v;
  const d = b.shape(v)?.at(-1);
  const shape = typeof d === 'number'
    ? b.ints([-1, d])
    : b.op('Concat', [b.ints([-1]), b.op('Shape', [v], 'int64', { start: -1 })], 'int64', { axis: 0 });
  return b.op('Reshape', [v, shape], v.dtype);
}

function linearRule(b: Backward, a: RuleArgs, rankA: number): (Value | undefined)[] {
  const [x, w, gy] = [a.x[0]!, a.x[1]!, a.gy[0]!];
  return [
    a.needs[0] ? b.op('MatMul', [gy, swapLast(b, w, 2)], gy.dtype) : undefined,
    a.needs[1] ? b.op('Gemm', [rows(b, x, rankA), rows(b, gy, rankA)], gy.dtype, { transA: 1 }) : undefined,
  ];
}

function promoted(shape: readonly SymDim[] | undefined, vectorAxis: number): readonly SymDim[] | undefined {
  if (!shape || shape.length !== 1) return shape;
  return vectorAxis === 0 ? [1, ...shape] : [...shape, 1];
}

function matmulRule(b: Backward, a: RuleArgs): (Value | undefined)[] {
  const [x, w, gy] = [a.x[0]!, a.x[1]!, a.gy[0]!];
  const [ra, rb] = [b.rank(x, 'MatMul'), b.rank(w, 'MatMul')];
  if (ra === 1 && rb === 1) return [a.needs[0] ? b.mul(gy, w) : undefined, a.needs[1] ? b.mul(gy, x) : undefined];
  if (rb === 2 && ra >= 2) return linearRule(b, a, ra);
  // vectors act as [1, k] (left) or [k, 1] (right) matrices whose extra axis is absent from the output
  const unsq = (v: Value, axis: number): Value => b.op('Unsqueeze', [v, b.ints([axis])], v.dtype);
  const a2 = ra === 1 ? unsq(x, 0) : x;
  const b2 = rb === 1 ? unsq(w, 1) : w;
  let g2 = ra === 1 ? unsq(gy, -2) : gy;
  if (rb === 1) g2 = unsq(g2, -1);
  const [sa, sb] = [promoted(b.shape(x), 0), promoted(b.shape(w), 1)];
  const batch = sa && sb ? broadcastShapes([sa.slice(0, -2), sb.slice(0, -2)]) : undefined;
  const out: (Value | undefined)[] = [];
  if (a.needs[0]) {
    const full = b.op('MatMul', [g2, swapLast(b, b2, Math.max(rb, 2))], gy.dtype);
    out[0] = b.reduceTo(full, batch && sa ? [...batch, ...sa.slice(-2)] : undefined, x);
  }
  if (a.needs[1]) {
    let full = b.op('MatMul', [swapLast(b, a2, Math.max(ra, 2)), g2], gy.dtype);
    let fullShape = batch && sb ? [...batch, ...sb.slice(-2)] : undefined;
    if (rb === 1) {
      full = b.op('Squeeze', [full, b.ints([-1])], gy.dtype);
      fullShape = fullShape?.slice(0, -1);
    }
    out[1] = b.reduceTo(full, fullShape, w);
  }
  return out;
}

export const MATMUL_RULES: Readonly<Record<string, VjpRule>> = {
  MatMul: { vjp: matmulRule },
};
