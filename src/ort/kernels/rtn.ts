// Round-to-nearest of a weight with min/max qparams in one onnxruntime graph: min and max per slice (tensor,
// channel, or group with a zero-padded partial last group), scale and zero point, codes and the dequantized
// weight. The arithmetic is quant/qparams.ts's op for op in fp32 (Div, Add, Clip, round half to even as
// Graph.roundHalfEven, which every execution provider runs, Sub, Mul),
// so codes, scales, zero points and the dequantized values are bitwise equal to the JavaScript path
// (test/ort/rtn.test.ts), at a fraction of its time on large weights. The caller gives the integer range and
// the smallest scale (quant/ sits above ort/ and defines them).

import { tensor } from '../../tensor.js';
import { Graph, type Value } from '../graph.js';
import type { Runtime } from '../session.js';

export interface RtnArgs {
  /** whose min/max make one scale: the whole tensor, each row, or each group of `groupSize` columns of a row */
  strategy: 'tensor' | 'channel' | 'group';
  groupSize: number;
  symmetric: boolean;
  qmin: number;
  qmax: number;
  /** the smallest scale */
  eps: number;
}

export interface RtnResult {
  codes: Int8Array;
  /** [rows or 1, groups] */
  scale: Float32Array;
  zeroPoint: Int8Array;
  dequantized: Float32Array;
}

/** the weight as [slices, width] rows whose min/max make one scale each, zero-padded to whole groups */
function slices(g: Graph, w: Value, rows: number, cols: number, args: RtnArgs): { v: Value; groups: number; width: number } {
  if (args.strategy === 'tensor') return { v: g.reshape(w, [1, rows * cols]), groups: 1, width: rows * cols };
  if (args.strategy === 'channel') return { v: w, groups: 1, width: cols };
  const gs = args.groupSize;
  const groups = Math.ceil(cols / gs);
  const padded = groups * gs === cols ? w : g.op('Pad', [w, g.ints([0, 0, 0, groups * gs - cols])], { mode: 'constant' });
  return { v: g.reshape(padded, [rows * groups, gs]), groups, width: gs };
}

function build(rows: number, cols: number, args: RtnArgs): Graph {
  const g = new Graph('rtn');
  const w = g.input('w', 'float32', [rows, cols]);
  const { v, groups, width } = slices(g, w, rows, cols, args);
  const { qmin, qmax, eps } = args;
  const keep = { keepdims: 1 };
  // 0 must be representable: min ≤ 0 ≤ max
  const lo = g.op('Min', [g.op('ReduceMin', [v, g.ints([-1])], keep), g.scalar(0)]);
  const hi = g.op('Max', [g.op('ReduceMax', [v, g.ints([-1])], keep), g.scalar(0)]);
  let scale: Value;
  let zp: Value;
  if (args.symmetric) {
    scale = g.op('Max', [g.div(g.op('Max', [g.op('Abs', [lo]), g.op('Abs', [hi])]), g.scalar((qmax - qmin) / 2)), g.scalar(eps)]);
    zp = g.sub(scale, scale); // a computed +0 (onnxruntime drops a constant one, which would keep −0)
  } else {
    scale = g.op('Max', [g.div(g.sub(hi, lo), g.scalar(qmax - qmin)), g.scalar(eps)]);
    zp = g.roundHalfEven(g.op('Clip', [g.sub(g.scalar(qmin), g.div(lo, scale)), g.scalar(qmin), g.scalar(qmax)]));
  }
  const q = g.roundHalfEven(g.op('Clip', [g.add(g.div(v, scale), zp), g.scalar(qmin), g.scalar(qmax)]));
  // dequantize the integer codes, as the JavaScript does (a code has no −0)
  const codes = g.cast(q, 'int8');
  const dq = g.mul(g.sub(g.cast(codes, 'float32'), zp), scale);
  const back = (x: Value): Value => {
    if (args.strategy !== 'group') return g.reshape(x, [rows, cols]);
    const full = g.reshape(x, [rows, groups * width]);
    return groups * width === cols ? full : g.op('Slice', [full, g.ints([0]), g.ints([cols]), g.ints([1])]);
  };
  const scaleRows = args.strategy === 'tensor' ? 1 : rows;
  g.output(back(codes), 'codes', [rows, cols]);
  g.output(back(dq), 'dequantized', [rows, cols]);
  g.output(g.reshape(scale, [scaleRows, groups]), 'scale', [scaleRows, groups]);
  g.output(g.cast(g.reshape(zp, [scaleRows, groups]), 'int8'), 'zero_point', [scaleRows, groups]);
  return g;
}

/** round-to-nearest of `w` [rows, cols] with min/max qparams per `args` */
export async function rtnMinMax(rt: Runtime, w: Float32Array, rows: number, cols: number, args: RtnArgs): Promise<RtnResult> {
  const layout = args.strategy === 'group' ? `g${args.groupSize}` : args.strategy;
  const key = `rtn.minmax:${rows}:${cols}:${args.qmin}:${args.qmax}:${args.eps}:${args.symmetric ? 's' : 'a'}:${layout}`;
  const kernel = await rt.kernel(key, () => build(rows, cols, args));
  const out = await kernel.run({ w: tensor('float32', [rows, cols], w) });
  return {
    codes: out['codes']!.data as Int8Array,
    dequantized: out['dequantized']!.data as Float32Array,
    scale: out['scale']!.data as Float32Array,
    zeroPoint: out['zero_point']!.data as Int8Array,
  };
}
