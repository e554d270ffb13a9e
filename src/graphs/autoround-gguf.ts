// AutoRound's learnable quantizer for ggml's 32-weight blocks (Q8_0, Q4_0, Q5_0, Q4_1) as graph ops: the
// block qparams come from the block's observed range shrunk by the learned min/max factors, as for integer
// schemes (graphs/autoround-kernel.ts), but rounded to float16 (Cast and back, nearest even) before any code
// is computed, so the codes are chosen against exactly the d (and Q4_1 m) the block stores. The learned
// offsets V then pick each code: q = clip(round(x / d + V), block range). This replaces ggml's own rounding
// rule (roundf, or trunc(x·(1/d) + 8.5)); llama.cpp's reader only needs valid codes. algo/autoround-gguf.ts
// computes the same codes and qparams in JS, op for op in float32 (test/graphs/autoround-gguf.test.ts).
//
// Per block of 32, lo = min·a, hi = max·b (the raw block range, not widened to 0: ggml's Q4_1 is not):
//   Q8_0  d = f16(max(|lo|, |hi|) / 127)                q = clip(round(x / d + V), −128, 127)     ŵ = q·d
//   Q4_0  mx = hi if hi ≥ −lo else lo (auto-round's signed max: the larger magnitude, ties to hi);
//         d = f16(mx / −8)                              q = clip(round(x / d + V), −8, 7)          ŵ = q·d
//         (stored code q + 8); Q5_0 the same with 16 (range −16..15, stored q + 16)
//   Q4_1  d = f16((hi − lo) / 15), m = f16(lo)          q = clip(round((x − m) / d + V), 0, 15)    ŵ = q·d + m
// A d that rounds to 0 divides by 1 instead (every ŵ of the block is then 0, or m). round is round half to
// even with a straight-through gradient; the float16 casts pass gradients straight through (autodiff's Cast).

import type { Graph, Value } from '../ort/graph.js';
import { learnedCodeRange, type LearnedBlockType } from '../algo/autoround-gguf.js';

/** the divisor of the block's values by d: 1 where d is 0 */
function divisor(g: Graph, d: Value): Value {
  const zero = g.op('Equal', [d, g.scalar(0)], {}, { dtype: 'bool' });
  return g.op('Where', [zero, g.scalar(1), d], {}, { dtype: 'float32' });
}

/**
 * the fake-quantized blocks of w [R, G, 32] with offsets v [R, G, 32] and learned range lo, hi [R, G];
 * `round` is the rounding op (the kernel's Identity when it checks gradients by finite differences)
 */
export function ggufLearnedBlocks(g: Graph, type: LearnedBlockType, w: Value, v: Value, lo: Value, hi: Value, round: (x: Value) => Value): Value {
  const half = (x: Value): Value => g.cast(g.cast(x, 'float16'), 'float32');
  const col = (x: Value): Value => g.op('Unsqueeze', [x, g.ints([-1])]);
  const { qmin, qmax } = learnedCodeRange(type);
  const clip = (x: Value): Value => g.op('Clip', [round(x), g.scalar(qmin), g.scalar(qmax)]);
  if (type === 'Q4_1') {
    const d = half(g.div(g.sub(hi, lo), g.scalar(15)));
    const m = col(half(lo));
    const q = clip(g.add(g.div(g.sub(w, m), col(divisor(g, d))), v));
    return g.add(g.mul(q, col(d)), m);
  }
  let raw: Value;
  if (type === 'Q8_0') raw = g.div(g.op('Max', [g.op('Abs', [lo]), g.op('Abs', [hi])]), g.scalar(127));
  else {
    const hiWins = g.op('GreaterOrEqual', [hi, g.op('Neg', [lo])], {}, { dtype: 'bool' });
    raw = g.div(g.op('Where', [hiWins, hi, lo], {}, { dtype: 'float32' }), g.scalar(-learnedCodeRange(type).offset));
  }
  const d = half(raw);
  const q = clip(g.add(g.div(w, col(divisor(g, d))), v));
  return g.mul(q, col(d));
}
