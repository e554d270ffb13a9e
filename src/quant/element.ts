// The value grid of a quantized element: signed integers, fp8 e4m3fn or fp4 e2m1. Source: compressed-tensors
// quantization/utils/helpers.py (calculate_range) and quant_args.py (round_to_quantized_type).
//
// compressed-tensors quantizes every type the same way, q = round(clamp(x / scale + zp, qmin, qmax)), and only
// `round` differs: torch.round (half to even) for int, a cast to float8_e4m3fn (nearest, ties to even) for fp8,
// cast_to_fp4 for fp4. What a layer state stores per weight is the element's code in an int8:
//   int  the integer itself (−2^(b−1) … 2^(b−1) − 1)
//   fp8  the e4m3fn byte, read as int8 (0xB8 = −1.0 is stored as −72)
//   fp4  the e2m1 nibble 0..15 (bit 3 the sign)

import { encodeFp4E2m1, FP4_E2M1_MAX, FP4_E2M1_VALUES, roundFp4E2m1 } from './fp4.js';
import { encodeFp8E4m3, FP8_E4M3_MAX, FP8_E4M3_VALUES, roundFp8E4m3 } from './fp8.js';
import { roundHalfEven } from './round.js';
import type { QuantArgs } from './quant-args.js';

export interface QElement {
  readonly kind: 'int' | 'fp8' | 'fp4';
  /** the clamp range of x / scale + zp */
  readonly qmin: number;
  readonly qmax: number;
  /** a clamped value onto the grid (signed zeros as torch gives them) */
  round(v: number): number;
  /** the stored code of a grid value */
  code(v: number): number;
  /** the grid value of a stored code */
  value(code: number): number;
}

/** the signed integer range of `bits`, also for asymmetric args: [-2^(b-1), 2^(b-1) - 1] */
export function qRange(bits: number): { readonly qmin: number; readonly qmax: number } {
  return { qmin: -(2 ** (bits - 1)), qmax: 2 ** (bits - 1) - 1 };
}

const INT_ELEMENTS = new Map<number, QElement>();

function intElement(bits: number): QElement {
  let e = INT_ELEMENTS.get(bits);
  if (!e) {
    e = { kind: 'int', ...qRange(bits), round: roundHalfEven, code: (v) => v, value: (c) => c };
    INT_ELEMENTS.set(bits, e);
  }
  return e;
}

export const FP8_ELEMENT: QElement = {
  kind: 'fp8',
  qmin: -FP8_E4M3_MAX,
  qmax: FP8_E4M3_MAX,
  round: (v) => roundFp8E4m3(v),
  code: (v) => (encodeFp8E4m3(v) << 24) >> 24,
  value: (c) => FP8_E4M3_VALUES[c & 0xff] as number,
};

export const FP4_ELEMENT: QElement = {
  kind: 'fp4',
  qmin: -FP4_E2M1_MAX,
  qmax: FP4_E2M1_MAX,
  round: roundFp4E2m1,
  code: encodeFp4E2m1,
  value: (c) => FP4_E2M1_VALUES[c & 15] as number,
};

/** the element of args (`type` absent: int) */
export function elementOf(args: Pick<QuantArgs, 'num_bits'> & { readonly type?: QuantArgs['type'] }): QElement {
  if (args.type !== 'float') return intElement(args.num_bits);
  return args.num_bits === 8 ? FP8_ELEMENT : FP4_ELEMENT;
}
