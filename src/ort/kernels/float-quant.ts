// Fake quantization onto float grids in onnxruntime (CPU EP, measured in docs/float-formats-onnxruntime.md):
// fp8 e4m3fn through Cast (float8 tensors exist only inside the graph: onnxruntime-node cannot feed or fetch
// them), fp4 e2m1 by arithmetic (the CPU EP has no float4 Cast), and the power-of-two MX scales. Each builder
// is the arithmetic of quant/fp8.ts, quant/fp4.ts and quant/qparams.ts op for op, so results are bitwise equal
// (test/ort/float-quant.test.ts):
//   fp8   Cast(v, float8e4m3fn, saturate) → Cast(float32): nearest, ties to even, subnormals, −0 kept
//   fp4   step = 2 for |v| ≥ 4, 1 for |v| ≥ 2, else 0.5 (the grid spacing of v's binade); Round(v / step) · step
//         (Round is half to even, so ties go to the even code as cast_to_fp4; both divisions are exact)
//   MX    p = the power of two ≤ amax (Floor(Log2) then two exact corrections), doubled when amax ≥ 1.75·p,
//         scale = max(p / 4, 2^-127); amax below 2^-126 (float32 subnormals, zero) gives 2^-127

import type { Graph, Value } from '../graph.js';

/** Where(cond, a, b) over float32 values */
const where = (g: Graph, cond: Value, a: Value, b: Value): Value => g.op('Where', [cond, a, b], {}, { dtype: 'float32' });

export type FloatElement = 'fp8' | 'fp4';

/** the largest magnitude of each float element (clamp bounds) */
export const FLOAT_ELEMENT_MAX: Readonly<Record<FloatElement, number>> = { fp8: 448, fp4: 6 };

/** v (already within ±448) onto the e4m3fn grid */
export function roundToFp8(g: Graph, v: Value): Value {
  return g.cast(g.cast(v, 'float8e4m3fn', 1), 'float32');
}

/** v (already within ±6) onto the e2m1 grid, ties to the even code, −0 for small negatives */
export function roundToFp4(g: Graph, v: Value): Value {
  const a = g.op('Abs', [v]);
  const inner = where(g, g.op('GreaterOrEqual', [a, g.scalar(2)], {}, { dtype: 'bool' }), g.scalar(1), g.scalar(0.5));
  const step = where(g, g.op('GreaterOrEqual', [a, g.scalar(4)], {}, { dtype: 'bool' }), g.scalar(2), inner);
  return g.mul(g.op('Round', [g.div(v, step)]), step);
}

/**
 * fq(x) = (round(clamp(x / scale + 0, ±max)) − 0) · scale on a float grid, `scale` broadcasting to x. The zero
 * point is added (computed, so onnxruntime keeps the Add): −0 becomes +0 before rounding, as in torch.
 */
export function fakeQuantFloat(g: Graph, x: Value, scale: Value, element: FloatElement): Value {
  const z = g.sub(scale, scale);
  const max = FLOAT_ELEMENT_MAX[element];
  const clipped = g.op('Clip', [g.add(g.div(x, scale), z), g.scalar(-max), g.scalar(max)]);
  const q = element === 'fp8' ? roundToFp8(g, clipped) : roundToFp4(g, clipped);
  return g.mul(g.sub(q, z), scale);
}

/** the MX (e8m0) scale of groups whose max |x| is `amax` (≥ 0), as quant/fp4.ts mxScaleByte → mxScaleValue */
export function mxScale(g: Graph, amax: Value): Value {
  const ge = (a: Value, b: Value): Value => g.op('GreaterOrEqual', [a, b], {}, { dtype: 'bool' });
  const normal = ge(amax, g.scalar(2 ** -126));
  // a normal amax, so Log is finite: log2 estimated, then corrected onto the exact power of two
  const safe = where(g, normal, amax, g.scalar(1));
  const e = g.op('Floor', [g.mul(g.op('Log', [safe]), g.scalar(1 / Math.LN2))]);
  let p = g.op('Pow', [g.scalar(2), e]);
  p = where(g, g.op('Greater', [p, safe], {}, { dtype: 'bool' }), g.mul(p, g.scalar(0.5)), p);
  p = where(g, ge(safe, g.mul(p, g.scalar(2))), g.mul(p, g.scalar(2)), p);
  const rounded = where(g, ge(safe, g.mul(p, g.scalar(1.75))), g.mul(p, g.scalar(2)), p);
  const scale = g.op('Max', [g.mul(rounded, g.scalar(0.25)), g.scalar(2 ** -127)]);
  return where(g, normal, scale, g.scalar(2 ** -127));
}
