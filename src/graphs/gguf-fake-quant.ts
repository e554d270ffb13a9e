// ggml's 32-weight block quantizers (Q8_0, Q4_0, Q4_1, Q5_0) as onnxruntime graph ops: what llama.cpp
// dequantizes ggml's reference codes of a block to, bit for bit the values of quant/gguf-blocks.ts's
// `quantize` then `value` (test/graphs/gguf-fake-quant.test.ts compares them). AWQ scores its candidate
// scales with it, so the search sees exactly the rounding the GGUF file stores.
//
// Per block of 32 along the last axis, every step one float32 op as ggml computes it:
//   Q8_0  d = max|x| / 127; id = d ≠ 0 ? 1/d : 0; q = roundf(x·id)              value q · f16(d)
//   Q4_0  mx = the x of largest |x| (first on ties: ArgMax keeps the first); d = mx / −8;
//         q = min(15, floor(x·id + 8.5))                                          value (q − 8) · f16(d)
//   Q5_0  as Q4_0 with 16 and 31
//   Q4_1  lo, hi = min, max x; d = (hi − lo) / 15; q = min(15, floor((x − lo)·id + 0.5))
//                                                                                 value q · f16(d) + f16(lo)
// The codes use the float32 d and the values the float16 one (Cast to float16 and back: round to nearest
// even, as GGML_FP32_TO_FP16). roundf is half away from zero: floor(|t|) + (|t| − floor(|t|) ≥ 0.5), the
// subtraction exact below 2^23, times the sign. The offsets' additions and truncations (floor of a sum that
// is never negative) are ggml's `(int8_t)(v + 8.5f)`; ggml's reference rounding, not half to even, because
// the file stores ggml's codes (gguf-weight.ts quantizeGgufRtn).

import type { Graph, Value } from '../ort/graph.js';
import type { GgufBlockTypeName } from '../quant/gguf-quantize.js';

/** the block types this graph builds (K-quants' sub-scale searches are iterative loops, not built here) */
export const GRAPH_BLOCK_TYPES = ['Q8_0', 'Q4_0', 'Q4_1', 'Q5_0'] as const satisfies readonly GgufBlockTypeName[];
export type GraphBlockType = (typeof GRAPH_BLOCK_TYPES)[number];

export const isGraphBlockType = (t: string | undefined): t is GraphBlockType => (GRAPH_BLOCK_TYPES as readonly string[]).includes(t ?? '');

/** float32 → float16 → float32, round to nearest even */
const half = (g: Graph, v: Value): Value => g.cast(g.cast(v, 'float16'), 'float32');

/** 1/d, and 0 where d = 0 (ggml's `d ? 1.0f/d : 0.0f`) */
function inverse(g: Graph, d: Value): Value {
  const zero = g.op('Equal', [d, g.scalar(0)], {}, { dtype: 'bool' });
  return g.op('Where', [zero, g.scalar(0), g.div(g.scalar(1), d)], {}, { dtype: 'float32' });
}

/** C roundf: half away from zero */
function roundAway(g: Graph, t: Value): Value {
  const a = g.op('Abs', [t]);
  const fl = g.op('Floor', [a]);
  const up = g.op('GreaterOrEqual', [g.sub(a, fl), g.scalar(0.5)], {}, { dtype: 'bool' });
  const r = g.op('Where', [up, g.add(fl, g.scalar(1)), fl], {}, { dtype: 'float32' });
  return g.mul(r, g.op('Sign', [t]));
}

/** ggml's reference block quantization then dequantization of `v`, blocks of 32 along its last axis (of size 32) */
export function ggufBlockFakeQuant(g: Graph, v: Value, type: GraphBlockType): Value {
  const keep = { keepdims: 1 };
  const last = g.ints([-1]);
  if (type === 'Q8_0') {
    const d = g.div(g.op('ReduceMax', [g.op('Abs', [v]), last], keep), g.scalar(127));
    return g.mul(roundAway(g, g.mul(v, inverse(g, d))), half(g, d));
  }
  if (type === 'Q4_1') {
    const lo = g.op('ReduceMin', [v, last], keep);
    const hi = g.op('ReduceMax', [v, last], keep);
    const d = g.div(g.sub(hi, lo), g.scalar(15));
    const q = g.op('Min', [g.op('Floor', [g.add(g.mul(g.sub(v, lo), inverse(g, d)), g.scalar(0.5))]), g.scalar(15)]);
    return g.add(g.mul(q, half(g, d)), half(g, lo));
  }
  const offset = type === 'Q4_0' ? 8 : 16;
  const idx = g.op('ArgMax', [g.op('Abs', [v])], { axis: -1, keepdims: 1, select_last_index: 0 }, { dtype: 'int64' });
  const mx = g.op('GatherElements', [v, idx], { axis: -1 });
  const d = g.div(mx, g.scalar(-offset));
  const q = g.op('Min', [g.op('Floor', [g.add(g.mul(v, inverse(g, d)), g.scalar(offset + 0.5))]), g.scalar(2 * offset - 1)]);
  return g.mul(g.sub(q, g.scalar(offset)), half(g, d));
}
