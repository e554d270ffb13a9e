// Fake quantization of a Linear's input activations inside a graph, for every input quantization quantforge
// runs (quant-args.ts checkActivationArgs), as compressed-tensors' forward_quantize does it at inference:
//   dynamic token   per row of the last axis: scale = max(max|x| / ((qmax − qmin) / 2), eps) (int8 ÷ 127.5,
//                   fp8 ÷ 448), W8A8 / W4A8 / FP8_DYNAMIC
//   static tensor   fp8 with the calibrated `<local>.input_scale` [1], FP8
//   dynamic group   per group of the last axis: fp8 scale max|x| / 448 (FP8_BLOCK), MX power of two (MXFP4)
//   tensor_group    NVFP4: fp8 group scales of 16 under the calibrated `<local>.input_global_scale` [1],
//                   x divided by fp32(fp8 scale / global scale)
// A last axis that is not a multiple of the group is padded with zeros for the scales (our extension;
// compressed-tensors refuses such widths). Static scales are graph inputs named like the layer tensors, so
// one graph serves every layer. The TypeScript reference is algo/fake-quant.ts fakeQuantizeActivations.

import type { Graph, Value } from '../ort/graph.js';
import { fakeQuantFloat, mxScale, roundToFp8 } from '../ort/kernels/float-quant.js';
import { fakeQuant } from '../ort/kernels/quant.js';
import { elementKind, isMx, type QuantArgs } from '../quant/quant-args.js';
import { staticInputTensor } from '../quant/module-quant.js';
import { FP32_EPS, qRange } from '../quant/qparams.js';

const FP8_MAX = 448;
const FP4_MAX = 6;

/** scale of each slice from its max |x| (0 included): symmetric int or fp8 with the eps floor */
function symmetricScale(g: Graph, absMax: Value, half: number): Value {
  return g.op('Max', [g.div(absMax, g.scalar(half)), g.scalar(FP32_EPS)]);
}

function fakeQuantElement(g: Graph, x: Value, scale: Value, a: QuantArgs): Value {
  const kind = elementKind(a);
  if (kind !== 'int') return fakeQuantFloat(g, x, scale, kind);
  const { qmin, qmax } = qRange(a.num_bits);
  return fakeQuant(g, x, scale, null, qmin, qmax);
}

/** per-group fake quantization of x [..., cols] with groups of `size` along the last axis */
function groupFakeQuant(g: Graph, x: Value, cols: number, size: number, quantize: (groups: Value, absMax: Value) => Value): Value {
  const n = Math.ceil(cols / size);
  const padded = n * size === cols ? x : g.op('Pad', [x, g.ints([0, 0, 0, 0, 0, n * size - cols])]);
  // [B, T, n, size]: the graphs' activations are [B, T, cols]
  const grouped = g.op('Reshape', [padded, g.ints([0, 0, n, size])]);
  // [B, T, n, 1]
  const absMax = g.reduceMax(g.op('Abs', [grouped]), [-1]);
  const out = g.op('Reshape', [quantize(grouped, absMax), g.ints([0, 0, n * size])]);
  return n * size === cols ? out : g.op('Slice', [out, g.ints([0]), g.ints([cols]), g.ints([-1])]);
}

/** NVFP4 group scales: fp8(clamp(global · (m / 6), ±448)), 0 → 0.125; returns what x is divided by */
function nvfp4Scale(g: Graph, absMax: Value, globalScale: Value): Value {
  const raw = g.op('Clip', [g.mul(globalScale, g.div(absMax, g.scalar(FP4_MAX))), g.scalar(-FP8_MAX), g.scalar(FP8_MAX)]);
  const s8 = roundToFp8(g, raw);
  const nonzero = g.op('Where', [g.op('Equal', [s8, g.scalar(0)], {}, { dtype: 'bool' }), g.scalar(0.125), s8], {}, { dtype: 'float32' });
  return g.div(nonzero, globalScale);
}

/** the graph inputs of static scales, each created on first use (`<local>.input_scale` [1] …) */
export function staticInputs(g: Graph): (name: string) => Value {
  const made = new Map<string, Value>();
  return (name) => {
    let v = made.get(name);
    if (!v) made.set(name, (v = g.input(name, 'float32', [1])));
    return v;
  };
}

/** dynamic symmetric per-token fake quantization with `bits`-bit integers (W8A8's activations) */
export function perTokenFakeQuant(g: Graph, x: Value, bits: number): Value {
  const { qmin, qmax } = qRange(bits);
  return fakeQuant(g, x, symmetricScale(g, g.reduceMax(g.op('Abs', [x]), [-1]), (qmax - qmin) / 2), null, qmin, qmax);
}

/**
 * Fake-quantize the input `x` [B, T, cols] of Linear `local` with input args `a`; `input(name)` gives (creating
 * on first use) the graph input of a static scale tensor named `<local>.<suffix>`.
 */
export function activationFakeQuant(g: Graph, x: Value, a: QuantArgs, cols: number, local: string, input: (name: string) => Value): Value {
  const kind = elementKind(a);
  const half = kind === 'int' ? (qRange(a.num_bits).qmax - qRange(a.num_bits).qmin) / 2 : kind === 'fp8' ? FP8_MAX : FP4_MAX;
  const suffix = staticInputTensor(a);
  if (a.strategy === 'token') return fakeQuantElement(g, x, symmetricScale(g, g.reduceMax(g.op('Abs', [x]), [-1]), half), a);
  if (a.strategy === 'tensor' && suffix === 'input_scale') return fakeQuantElement(g, x, input(`${local}.input_scale`), a);
  const size = a.group_size as number;
  if (a.strategy === 'tensor_group' && suffix === 'input_global_scale') {
    const globalScale = input(`${local}.input_global_scale`);
    return groupFakeQuant(g, x, cols, size, (v, m) => fakeQuantFloat(g, v, nvfp4Scale(g, m, globalScale), 'fp4'));
  }
  if (a.strategy === 'group' && a.dynamic === true) {
    const scaleOf = (m: Value): Value => (isMx(a) ? mxScale(g, m) : symmetricScale(g, m, half));
    return groupFakeQuant(g, x, cols, size, (v, m) => fakeQuantElement(g, v, scaleOf(m), a));
  }
  throw new Error(`activationFakeQuant: no graph for ${kind} strategy "${a.strategy}" dynamic ${String(a.dynamic)} (checkActivationArgs admits it?)`);
}
