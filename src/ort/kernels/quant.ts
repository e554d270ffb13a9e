// Fake quantization in onnxruntime: a graph-building helper other kernels embed (the decoder graph's
// per-token activations, AWQ's candidates), and the MSE observer's batch of shrink candidates (errors of
// many candidate scales at once). The arithmetic is the one of quant/qparams.ts, op for op, so results are bitwise
// equal: Div, Add zero point, Clip, round half to even (Graph.roundHalfEven: two fp32 additions, which the
// WebGPU provider runs, where it has no Round), Sub zero point, Mul, all in fp32.

import { Graph, type Value } from '../graph.js';
import type { Runtime } from '../session.js';

/**
 * fq(w) = (Round(Clip(w / scale + zp, qmin, qmax)) − zp) · scale.
 * `groupSize` says how scale/zeroPoint [..., G] reach w [..., K]: null broadcasts them as they are
 * (tensor, channel, token, or scale already shaped like w); a number gives column j the scale
 * column floor(j / groupSize) (a partial last group included); an int64 Value [K] is g_idx.
 * `zeroPoint` is float32 like scale; null means 0 (still added, so -0 becomes +0 as in torch).
 */
export function fakeQuant(
  g: Graph,
  w: Value,
  scale: Value,
  zeroPoint: Value | null,
  qmin: number,
  qmax: number,
  groupSize: number | Value | null = null,
): Value {
  let s = scale;
  let z = zeroPoint;
  if (groupSize !== null) {
    const index = typeof groupSize === 'number' ? columnGroups(g, w, groupSize) : groupSize;
    s = g.op('Gather', [scale, index], { axis: -1 });
    if (zeroPoint) z = g.op('Gather', [zeroPoint, index], { axis: -1 });
  }
  // a computed zero: onnxruntime drops Add with a constant 0, which would keep -0 where torch gives +0
  z ??= g.sub(s, s);
  const clipped = g.op('Clip', [g.add(g.div(w, s), z), g.scalar(qmin), g.scalar(qmax)]);
  return g.mul(g.sub(g.roundHalfEven(clipped), z), s);
}

/** int64 [K]: floor(j / groupSize) for every column j of w [..., K] */
function columnGroups(g: Graph, w: Value, groupSize: number): Value {
  const k = g.op('Squeeze', [g.op('Shape', [w], { start: -1 }, { dtype: 'int64' }), g.ints([0])]);
  const cols = g.op('Range', [g.int(0), k, g.int(1)]);
  return g.op('Div', [cols, g.int(groupSize)]);
}

/** a weight laid out as [rows, groups, width] slices (zero-padded), with its range and error norm */
export interface ShrinkProblem {
  readonly w: Float32Array;
  readonly rows: number;
  readonly groups: number;
  readonly width: number;
  readonly qmin: number;
  readonly qmax: number;
  readonly norm: number;
}

/** values per onnxruntime call of the shrink kernel (candidates × rows × groups × width) */
const SHRINK_BUDGET = 1 << 24;

/**
 * Σ_e |fq(w) − w|^norm per candidate and slice: errors [count, rows, groups] for scale and zero point
 * [count, rows, groups]. Rows are processed in chunks so no call holds more than SHRINK_BUDGET values.
 */
export async function shrinkErrors(rt: Runtime, p: ShrinkProblem, scale: Float32Array, zeroPoint: Float32Array, count: number): Promise<Float32Array> {
  const kernel = await rt.kernel(`quant.shrink:${p.qmin}:${p.qmax}:${p.norm}`, () => {
    const g = new Graph('shrink_errors');
    const w = g.input('w', 'float32', ['R', 'G', 'W']);
    const s = g.input('scale', 'float32', ['C', 'R', 'G', 1]);
    const z = g.input('zero_point', 'float32', ['C', 'R', 'G', 1]);
    const fq = fakeQuant(g, w, s, z, p.qmin, p.qmax);
    const e = g.op('Pow', [g.op('Abs', [g.sub(fq, w)]), g.scalar(p.norm)]);
    g.output(g.reduceSum(e, [-1], false), 'err');
    return g;
  });
  const slices = p.rows * p.groups;
  const err = new Float32Array(count * slices);
  const step = Math.max(1, Math.floor(SHRINK_BUDGET / (count * p.groups * p.width)));
  for (let r0 = 0; r0 < p.rows; r0 += step) {
    const r1 = Math.min(p.rows, r0 + step);
    const n = (r1 - r0) * p.groups;
    const s = new Float32Array(count * n);
    const z = new Float32Array(count * n);
    for (let c = 0; c < count; c++) {
      s.set(scale.subarray(c * slices + r0 * p.groups, c * slices + r1 * p.groups), c * n);
      z.set(zeroPoint.subarray(c * slices + r0 * p.groups, c * slices + r1 * p.groups), c * n);
    }
    const out = await kernel.run({
      w: { dtype: 'float32', dims: [r1 - r0, p.groups, p.width], data: p.w.subarray(r0 * p.groups * p.width, r1 * p.groups * p.width) },
      scale: { dtype: 'float32', dims: [count, r1 - r0, p.groups, 1], data: s },
      zero_point: { dtype: 'float32', dims: [count, r1 - r0, p.groups, 1], data: z },
    });
    const e = out.err?.data as Float32Array;
    for (let c = 0; c < count; c++) err.set(e.subarray(c * n, (c + 1) * n), c * slices + r0 * p.groups);
  }
  return err;
}
