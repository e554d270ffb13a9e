// Scales, zero points and (fake) quantization of a weight, bit-exact with compressed-tensors in fp32.
// Source: compressed-tensors quantization/utils/helpers.py (calculate_range, calculate_qparams,
// generate_gparam) and quantization/lifecycle/forward.py (_quantize, _dequantize, group, block and g_idx).
//
// Every intermediate is rounded to float32 (Math.fround) exactly where torch's fp32 kernels round, so
// scales, zero points and codes match torch bit for bit on fp32 weights. A weight is [rows = out features,
// cols = in features], row-major. Strategy `group` (and `tensor_group`) gives each row ceil(cols / group_size)
// scales, `block` [br, bc] one scale per block, [ceil(rows / br), ceil(cols / bc)]; a partial last group or
// block covers the remaining columns or rows (compressed-tensors itself refuses such widths; its qparam
// shapes allow them, and we quantize them rather than skip).
// Scales by element (element.ts has the grids), from m = max(|min|, |max|) of each slice (0 included):
//   int, fp8   symmetric m / ((qmax − qmin) / 2), ≥ fp32 eps (fp8: m / 448); asymmetric int as calculate_qparams
//   NVFP4      s = fp8(clamp(g · (m / 6), ±448)), 0 → 0.125, under the global scale g = 448 · 6 / max|W|
//              (an all-zero weight: g = 1, compressed-tensors' later rule); x is divided by fp32(s / g)
//   MXFP4      2^(b − 127) for the e8m0 byte b of m (fp4.ts)
// Int and fp8 scales are rounded to the dtype the checkpoint stores them in (the model's: bfloat16, float16)
// before any zero point or code is computed from them, as compressed-tensors' observer does in the weight's
// dtype; so the stored checkpoint dequantizes to exactly the fake-quantized weight. NVFP4 (fp8 scales) and
// MXFP4 (e8m0 bytes) have their own scale dtypes; float32 leaves every value as it was.

import { elementOf, qRange, type QElement } from './element.js';
import { mxScaleByte, mxScaleValue } from './fp4.js';
import { FP8_E4M3_MAX, roundFp8E4m3 } from './fp8.js';
import { fromBfloat16, fromFloat16, toBfloat16, toFloat16 } from './half.js';
import { roundHalfEven } from './round.js';
import { isMx, type QuantArgs } from './quant-args.js';
import { ReasonedError } from '../diag/failure.js';

export { qRange } from './element.js';

export const FP32_EPS = 2 ** -23;
const f = Math.fround;

export class QuantShapeError extends ReasonedError<'quant-shape-mismatch'> {
  constructor(message: string) {
    super('quant-shape-mismatch', message);
  }
}

/** the args fields the arithmetic reads (`type` absent: int) */
export type QuantArithArgs = Pick<QuantArgs, 'num_bits' | 'symmetric' | 'strategy' | 'group_size'> & Partial<Pick<QuantArgs, 'type' | 'block_structure'>>;

/** the dtype a checkpoint stores int and fp8 scales in: the model's */
export type ScaleDtype = 'float32' | 'bfloat16' | 'float16';

/** x rounded (to nearest even) to `dtype`, as `.to(dtype)` rounds it */
export function inScaleDtype(x: number, dtype: ScaleDtype): number {
  if (dtype === 'float32') return f(x);
  const v = Float32Array.of(x);
  return (dtype === 'bfloat16' ? fromBfloat16(toBfloat16(v)) : fromFloat16(toFloat16(v)))[0] as number;
}

/** what computeQParams reads (`strategy` tells NVFP4 and MXFP4 apart; absent: int or fp8) */
type ScaleArgs = Pick<QuantArgs, 'num_bits' | 'symmetric'> & Partial<Pick<QuantArgs, 'type' | 'strategy'>>;

type LayoutArgs = Pick<QuantArgs, 'strategy' | 'group_size'> & Partial<Pick<QuantArgs, 'block_structure'>>;

export interface QParams {
  /** [rows, groups] row-major; [1, 1] for tensor, [rows, 1] for channel, [row blocks, col blocks] for block */
  readonly scale: Float32Array;
  readonly zeroPoint: Int8Array;
  /** NVFP4 (tensor_group): the fp32 global scale the fp8 group scales are divided by */
  readonly globalScale?: number;
}

export interface MinMax {
  readonly min: Float32Array;
  readonly max: Float32Array;
}

/** rows and columns of the weight each scale covers: [1 or rows, columns per scale] */
function sliceSize(rows: number, cols: number, args: LayoutArgs): [number, number] {
  switch (args.strategy) {
    case 'tensor':
      return [rows, cols];
    case 'channel':
      return [1, cols];
    case 'group':
    case 'tensor_group':
      if (args.group_size === null || args.group_size <= 0) throw new QuantShapeError(`strategy "${args.strategy}" needs a positive group_size, found ${args.group_size}`);
      return [1, args.group_size];
    case 'block': {
      const [br, bc] = args.block_structure ?? [];
      if (br === undefined || bc === undefined) throw new QuantShapeError('strategy "block" needs block_structure [rows, cols]');
      return [br, bc];
    }
    case 'token':
      throw new QuantShapeError('strategy "token" applies to activations, not weights; expected tensor, channel, group, tensor_group or block');
  }
}

/** the [rows, cols] of the scale tensor of a weight [rows, cols] */
export function qparamShape(rows: number, cols: number, args: LayoutArgs): [number, number] {
  const [sr, sc] = sliceSize(rows, cols, args);
  return args.strategy === 'tensor' ? [1, 1] : [Math.ceil(rows / sr), Math.ceil(cols / sc)];
}

/** m = max(|min|, |max|) with 0 included, as calculate_qparams and generate_gparam take it */
const absMax = (lo: number, hi: number): number => Math.max(Math.abs(Math.min(lo, 0)), Math.abs(Math.max(hi, 0)));

/** NVFP4's global scale from the min and max of the whole weight: 448 · 6 / m (generate_gparam), 1 when m = 0 */
export function nvfp4GlobalScale(min: number, max: number): number {
  // clamped to the smallest normal, and a non-finite result replaced by 1 (compressed-tensors ≥ 0.14)
  const g = f(2688 / Math.max(absMax(min, max), 2 ** -126));
  return Number.isFinite(g) ? g : 1;
}

/**
 * scale and zero point for each (min, max) pair, as calculate_qparams computes them in fp32; int and fp8
 * scales rounded to `scaleDtype` (the stored dtype) before the clamp to eps and the zero point
 */
export function computeQParams(min: Float32Array, max: Float32Array, args: ScaleArgs, globalScale?: number, scaleDtype: ScaleDtype = 'float32'): QParams {
  if (min.length !== max.length) throw new QuantShapeError(`min has ${min.length} values but max has ${max.length}; expected equal lengths`);
  const { qmin, qmax } = elementOf(args);
  const range = qmax - qmin;
  const scale = new Float32Array(min.length);
  const zeroPoint = new Int8Array(min.length);
  const mx = args.strategy !== undefined && isMx({ type: args.type ?? 'int', num_bits: args.num_bits, strategy: args.strategy });
  const nv = args.type === 'float' && args.strategy === 'tensor_group';
  if (nv && globalScale === undefined) throw new QuantShapeError('strategy "tensor_group" (NVFP4) needs the global scale of the weight');
  for (let i = 0; i < min.length; i++) {
    const lo = Math.min(min[i] as number, 0);
    const hi = Math.max(max[i] as number, 0);
    if (mx) scale[i] = mxScaleValue(mxScaleByte(f(absMax(lo, hi))));
    else if (nv) {
      const s = roundFp8E4m3(Math.min(Math.max(f((globalScale as number) * f(absMax(lo, hi) / qmax)), -FP8_E4M3_MAX), FP8_E4M3_MAX));
      // an fp8 scale of 0 becomes the next fp8 value compressed-tensors picks, 0.125
      scale[i] = s === 0 ? 0.125 : s;
    } else if (args.symmetric) {
      scale[i] = Math.max(inScaleDtype(absMax(lo, hi) / (range / 2), scaleDtype), FP32_EPS);
    } else {
      const s = Math.max(inScaleDtype(f(hi - lo) / range, scaleDtype), FP32_EPS);
      scale[i] = s;
      const zp = f(qmin - f(lo / s));
      zeroPoint[i] = roundHalfEven(Math.min(Math.max(zp, qmin), qmax));
    }
  }
  return nv ? { scale, zeroPoint, globalScale: globalScale as number } : { scale, zeroPoint };
}

/** min and max of each scale's slice of `w` (tensor: all, channel: a row, group: a row's group, block: a block) */
export function weightMinMax(w: Float32Array, rows: number, cols: number, args: LayoutArgs): MinMax {
  checkWeight(w, rows, cols);
  const [qr, groups] = qparamShape(rows, cols, args);
  const [sr, width] = sliceSize(rows, cols, args);
  const min = new Float32Array(qr * groups).fill(Infinity);
  const max = new Float32Array(qr * groups).fill(-Infinity);
  for (let r = 0; r < rows; r++) {
    const base = Math.floor(r / sr) * groups;
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

/** the min and max of a whole weight (what NVFP4's global scale is computed from) */
export function tensorMinMax(w: Float32Array): { min: number; max: number } {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < w.length; i++) {
    const v = w[i] as number;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return { min, max };
}

function checkWeight(w: ArrayLike<number>, rows: number, cols: number): void {
  if (w.length !== rows * cols) throw new QuantShapeError(`weight has ${w.length} values but [${rows}, ${cols}] needs ${rows * cols}`);
}

/** for each column, the scale column it uses: 0 (tensor, channel), c / group_size (c / block cols), or g_idx[c] */
export function columnGroups(cols: number, args: LayoutArgs, gIdx?: Int32Array): Int32Array {
  const groups = qparamShape(1, cols, args)[1];
  const out = new Int32Array(cols);
  if (args.strategy === 'tensor' || args.strategy === 'channel') return out;
  if (gIdx !== undefined) {
    if (gIdx.length !== cols) throw new QuantShapeError(`g_idx has ${gIdx.length} entries but the weight has ${cols} columns`);
    for (let c = 0; c < cols; c++) {
      const g = gIdx[c] as number;
      if (g < 0 || g >= groups) throw new QuantShapeError(`g_idx[${c}] = ${g} is outside the ${groups} groups [0, ${groups - 1}]`);
      out[c] = g;
    }
    return out;
  }
  const width = sliceSize(1, cols, args)[1];
  for (let c = 0; c < cols; c++) out[c] = Math.floor(c / width);
  return out;
}

/**
 * What x is divided by: the stored scales, or for NVFP4 each fp8 scale over the global scale in fp32
 * (`scale.to(float32) / global_scale` in _quantize and _dequantize).
 */
export function effectiveScales(qp: QParams): Float32Array {
  const g = qp.globalScale;
  return g === undefined ? qp.scale : qp.scale.map((s) => f(s / g));
}

/** how a weight's values map to their scales: what quantizeWeight and its one-pass int twin (int-codes.ts) walk */
export interface Walk {
  readonly scale: Float32Array;
  readonly zeroPoint: Int8Array;
  readonly colGroup: Int32Array;
  readonly groups: number;
  /** rows per scale row: all of them for tensor, the block height for block, else 1 */
  readonly rowsPer: number;
  readonly element: QElement;
}

export function walk(n: number, rows: number, cols: number, qp: QParams, args: QuantArithArgs, gIdx?: Int32Array): Walk {
  checkWeight({ length: n }, rows, cols);
  const [qr, groups] = qparamShape(rows, cols, args);
  if (qp.scale.length !== qr * groups || qp.zeroPoint.length !== qr * groups) {
    throw new QuantShapeError(
      `scale has ${qp.scale.length} and zero point ${qp.zeroPoint.length} values; strategy "${args.strategy}" on [${rows}, ${cols}] needs [${qr}, ${groups}]`,
    );
  }
  const element = elementOf(args);
  return { scale: effectiveScales(qp), zeroPoint: qp.zeroPoint, colGroup: columnGroups(cols, args, gIdx), groups, rowsPer: sliceSize(rows, cols, args)[0], element };
}

/** the grid value of x / scale + zp, clamped and rounded (half to even for int; torch keeps -0) */
function quantizeOne(x: number, s: number, z: number, e: QElement): number {
  const v = f(f(x / s) + z);
  return e.round(Math.min(Math.max(v, e.qmin), e.qmax));
}

/** element codes of q = round(clamp(w / scale + zp, qmin, qmax)) (element.ts: integers, fp8 bytes, fp4 nibbles) */
export function quantizeWeight(w: Float32Array, rows: number, cols: number, qp: QParams, args: QuantArithArgs, gIdx?: Int32Array): Int8Array {
  const k = walk(w.length, rows, cols, qp, args, gIdx);
  const out = new Int8Array(w.length);
  for (let r = 0; r < rows; r++) {
    const base = Math.floor(r / k.rowsPer) * k.groups;
    for (let c = 0; c < cols; c++) {
      const j = base + (k.colGroup[c] as number);
      out[r * cols + c] = k.element.code(quantizeOne(w[r * cols + c] as number, k.scale[j] as number, k.zeroPoint[j] as number, k.element));
    }
  }
  return out;
}

/** (q - zp) · scale in fp32, q the grid value of each code */
export function dequantizeWeight(codes: Int8Array, rows: number, cols: number, qp: QParams, args: QuantArithArgs, gIdx?: Int32Array): Float32Array {
  const k = walk(codes.length, rows, cols, qp, args, gIdx);
  const out = new Float32Array(codes.length);
  for (let r = 0; r < rows; r++) {
    const base = Math.floor(r / k.rowsPer) * k.groups;
    for (let c = 0; c < cols; c++) {
      const j = base + (k.colGroup[c] as number);
      out[r * cols + c] = f((k.element.value(codes[r * cols + c] as number) - (k.zeroPoint[j] as number)) * (k.scale[j] as number));
    }
  }
  return out;
}

/** quantize then dequantize, as compressed-tensors' fake_quantize (bitwise, signed zeros included) */
export function fakeQuantizeWeight(w: Float32Array, rows: number, cols: number, qp: QParams, args: QuantArithArgs, gIdx?: Int32Array): Float32Array {
  const k = walk(w.length, rows, cols, qp, args, gIdx);
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) {
    const base = Math.floor(r / k.rowsPer) * k.groups;
    for (let c = 0; c < cols; c++) {
      const j = base + (k.colGroup[c] as number);
      const s = k.scale[j] as number;
      const z = k.zeroPoint[j] as number;
      out[r * cols + c] = f((quantizeOne(w[r * cols + c] as number, s, z, k.element) - z) * s);
    }
  }
  return out;
}
