// Scales, zero points and (fake) quantization of a weight, bit-exact with compressed-tensors in fp32.
// Source: compressed-tensors quantization/utils/helpers.py (calculate_range, calculate_qparams) and
// quantization/lifecycle/forward.py (_quantize, _dequantize, group handling, g_idx).
//
// Every intermediate is rounded to float32 (Math.fround) exactly where torch's fp32 kernels round, so
// scales, zero points and codes match torch bit for bit on fp32 weights. Rounding is half to even.
// A weight is [rows = out features, cols = in features], row-major. Strategy `group` gives each row
// ceil(cols / group_size) scales; a partial last group covers the remaining columns (compressed-tensors
// itself refuses such widths; its qparam shapes allow them, and we quantize them rather than skip).

import { roundHalfEven } from './round.js';
import type { QuantArgs } from './scheme.js';
import { ReasonedError } from '../diag/failure.js';

export const FP32_EPS = 2 ** -23;
const f = Math.fround;

export class QuantShapeError extends ReasonedError<'quant-shape-mismatch'> {
  constructor(message: string) {
    super('quant-shape-mismatch', message);
  }
}

/** the args fields the arithmetic reads */
export type QuantArithArgs = Pick<QuantArgs, 'num_bits' | 'symmetric' | 'strategy' | 'group_size'>;

export interface QRange {
  readonly qmin: number;
  readonly qmax: number;
}

/** the signed integer range of `bits`, also for asymmetric args: [-2^(b-1), 2^(b-1) - 1] */
export function qRange(bits: number): QRange {
  return { qmin: -(2 ** (bits - 1)), qmax: 2 ** (bits - 1) - 1 };
}

export interface QParams {
  /** [rows, groups] row-major; [1, 1] for tensor, [rows, 1] for channel */
  readonly scale: Float32Array;
  readonly zeroPoint: Int8Array;
}

export interface MinMax {
  readonly min: Float32Array;
  readonly max: Float32Array;
}

/** the [rows, cols] of the scale tensor of a weight [rows, cols] */
export function qparamShape(rows: number, cols: number, args: Pick<QuantArgs, 'strategy' | 'group_size'>): [number, number] {
  switch (args.strategy) {
    case 'tensor':
      return [1, 1];
    case 'channel':
      return [rows, 1];
    case 'group':
      if (args.group_size === null || args.group_size <= 0) throw new QuantShapeError(`strategy "group" needs a positive group_size, found ${args.group_size}`);
      return [rows, Math.ceil(cols / args.group_size)];
    case 'token':
      throw new QuantShapeError('strategy "token" applies to activations, not weights; expected tensor, channel or group');
  }
}

/** scale and zero point for each (min, max) pair, as calculate_qparams computes them in fp32 */
export function computeQParams(min: Float32Array, max: Float32Array, args: Pick<QuantArgs, 'num_bits' | 'symmetric'>): QParams {
  if (min.length !== max.length) throw new QuantShapeError(`min has ${min.length} values but max has ${max.length}; expected equal lengths`);
  const { qmin, qmax } = qRange(args.num_bits);
  const range = qmax - qmin;
  const scale = new Float32Array(min.length);
  const zeroPoint = new Int8Array(min.length);
  for (let i = 0; i < min.length; i++) {
    // 0 must be representable
    const lo = Math.min(min[i] as number, 0);
    const hi = Math.max(max[i] as number, 0);
    if (args.symmetric) {
      scale[i] = Math.max(f(Math.max(Math.abs(lo), Math.abs(hi)) / (range / 2)), FP32_EPS);
    } else {
      const s = Math.max(f(f(hi - lo) / range), FP32_EPS);
      scale[i] = s;
      const zp = f(qmin - f(lo / s));
      zeroPoint[i] = roundHalfEven(Math.min(Math.max(zp, qmin), qmax));
    }
  }
  return { scale, zeroPoint };
}

/** min and max of each scale's slice of `w` (tensor: all, channel: a row, group: a row's group) */
export function weightMinMax(w: Float32Array, rows: number, cols: number, args: Pick<QuantArgs, 'strategy' | 'group_size'>): MinMax {
  checkWeight(w, rows, cols);
  const [qr, groups] = qparamShape(rows, cols, args);
  const width = args.strategy === 'group' ? (args.group_size as number) : cols;
  const min = new Float32Array(qr * groups).fill(Infinity);
  const max = new Float32Array(qr * groups).fill(-Infinity);
  for (let r = 0; r < rows; r++) {
    const base = args.strategy === 'tensor' ? 0 : r * groups;
    for (let g = 0; g < groups; g++) {
      let lo = min[base + g] as number;
      let hi = max[base + g] as number;
      const end = Math.min((g + 1) * width, cols);
      for (let c = g * width; c < end; c++) {
        const v = w[r * cols + c] as number;
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
      min[base + g] = lo;
      max[base + g] = hi;
    }
  }
  return { min, max };
}

function checkWeight(w: ArrayLike<number>, rows: number, cols: number): void {
  if (w.length !== rows * cols) throw new QuantShapeError(`weight has ${w.length} values but [${rows}, ${cols}] needs ${rows * cols}`);
}

/** for each column, the scale column it uses: 0 (tensor, channel), c / group_size, or g_idx[c] */
export function columnGroups(cols: number, args: Pick<QuantArgs, 'strategy' | 'group_size'>, gIdx?: Int32Array): Int32Array {
  const groups = qparamShape(1, cols, args)[1];
  const out = new Int32Array(cols);
  if (args.strategy !== 'group') return out;
  if (gIdx !== undefined) {
    if (gIdx.length !== cols) throw new QuantShapeError(`g_idx has ${gIdx.length} entries but the weight has ${cols} columns`);
    for (let c = 0; c < cols; c++) {
      const g = gIdx[c] as number;
      if (g < 0 || g >= groups) throw new QuantShapeError(`g_idx[${c}] = ${g} is outside the ${groups} groups [0, ${groups - 1}]`);
      out[c] = g;
    }
    return out;
  }
  for (let c = 0; c < cols; c++) out[c] = Math.floor(c / (args.group_size as number));
  return out;
}

interface Walk {
  readonly scale: Float32Array;
  readonly zeroPoint: Int8Array;
  readonly colGroup: Int32Array;
  readonly groups: number;
  readonly tensor: boolean;
}

function walk(n: number, rows: number, cols: number, qp: QParams, args: QuantArithArgs, gIdx?: Int32Array): Walk {
  checkWeight({ length: n }, rows, cols);
  const [qr, groups] = qparamShape(rows, cols, args);
  if (qp.scale.length !== qr * groups || qp.zeroPoint.length !== qr * groups) {
    throw new QuantShapeError(
      `scale has ${qp.scale.length} and zero point ${qp.zeroPoint.length} values; strategy "${args.strategy}" on [${rows}, ${cols}] needs [${qr}, ${groups}]`,
    );
  }
  return { scale: qp.scale, zeroPoint: qp.zeroPoint, colGroup: columnGroups(cols, args, gIdx), groups, tensor: args.strategy === 'tensor' };
}

/** x / scale + zp, clamped and rounded half to even, as a float (torch keeps -0) */
function quantizeOne(x: number, s: number, z: number, qmin: number, qmax: number): number {
  const v = f(f(x / s) + z);
  return roundHalfEven(Math.min(Math.max(v, qmin), qmax));
}

/** integer codes q = round(clamp(w / scale + zp, qmin, qmax)) */
export function quantizeWeight(w: Float32Array, rows: number, cols: number, qp: QParams, args: QuantArithArgs, gIdx?: Int32Array): Int8Array {
  const k = walk(w.length, rows, cols, qp, args, gIdx);
  const { qmin, qmax } = qRange(args.num_bits);
  const out = new Int8Array(w.length);
  for (let r = 0; r < rows; r++) {
    const base = k.tensor ? 0 : r * k.groups;
    for (let c = 0; c < cols; c++) {
      const j = base + (k.colGroup[c] as number);
      out[r * cols + c] = quantizeOne(w[r * cols + c] as number, k.scale[j] as number, k.zeroPoint[j] as number, qmin, qmax);
    }
  }
  return out;
}

/** (q - zp) · scale in fp32 */
export function dequantizeWeight(codes: Int8Array, rows: number, cols: number, qp: QParams, args: QuantArithArgs, gIdx?: Int32Array): Float32Array {
  const k = walk(codes.length, rows, cols, qp, args, gIdx);
  const out = new Float32Array(codes.length);
  for (let r = 0; r < rows; r++) {
    const base = k.tensor ? 0 : r * k.groups;
    for (let c = 0; c < cols; c++) {
      const j = base + (k.colGroup[c] as number);
      out[r * cols + c] = f(((codes[r * cols + c] as number) - (k.zeroPoint[j] as number)) * (k.scale[j] as number));
    }
  }
  return out;
}

/** quantize then dequantize, as compressed-tensors' fake_quantize (bitwise, signed zeros included) */
export function fakeQuantizeWeight(w: Float32Array, rows: number, cols: number, qp: QParams, args: QuantArithArgs, gIdx?: Int32Array): Float32Array {
  const k = walk(w.length, rows, cols, qp, args, gIdx);
  const { qmin, qmax } = qRange(args.num_bits);
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) {
    const base = k.tensor ? 0 : r * k.groups;
    for (let c = 0; c < cols; c++) {
      const j = base + (k.colGroup[c] as number);
      const s = k.scale[j] as number;
      const z = k.zeroPoint[j] as number;
      out[r * cols + c] = f((quantizeOne(w[r * cols + c] as number, s, z, qmin, qmax) - z) * s);
    }
  }
  return out;
}
