// fp4 e2m1 (the element type of NVFP4 and MXFP4) and e8m0 (MXFP4's power-of-two group scales).
// Sources: compressed-tensors FP4_E2M1_DATA.cast_to_fp4 (quant_args.py), pack_fp4_to_uint8 (nvfp4 compressor),
// generate_mx_scales / round_to_power_2 / maybe_convert_from_mx_exp (quantization/utils/mxfp_utils.py),
// the OCP Microscaling (MX) specification.
//
// e2m1: a nibble s e e m, 1 sign, 2 exponent bits (bias 1), 1 mantissa bit, no infinities, no NaN.
//   codes 0..7 → 0, 0.5, 1, 1.5, 2, 3, 4, 6 (0.5 is the one subnormal); bit 3 is the sign: 8 = −0, 15 = −6
// Rounding (cast_to_fp4): the nearest value, ties to the even code, saturating at 6. On |x|:
//   [0, 0.25] → 0, (0.25, 0.75) → 0.5, [0.75, 1.25] → 1, (1.25, 1.75) → 1.5, [1.75, 2.5] → 2,
//   (2.5, 3.5) → 3, [3.5, 5] → 4, (5, ∞) → 6; the sign is torch.sign(x)'s, so −0.1 → −0 (code 8), and NaN
//   stays NaN (it has no code: encodeFp4E2m1 maps it to 0, as pack_fp4_to_uint8's argmin does).
//
// e8m0: a byte b, scale = 2^(b − 127) (b = 255 is NaN in OCP MX; compressed-tensors never writes it for finite
// weights). An MX group's scale from its max |x| (generate_mx_scales on float32, bit for bit):
//   1. p = amax rounded to a power of two, rounding up when the mantissa is ≥ 0.75 (bits + 2^21, keep sign and
//      exponent): 1.74 → 1, 1.75 → 2, 6 → 4, 7 → 8
//   2. b = clamp(127 + log2(p) − 2, 0, 255), 2 = floor(log2(6)) the exponent of e2m1's largest value
//   worked examples: amax 6 → p 4 → b 127 (scale 1, 6 → 6); amax 7 → p 8 → b 128 (scale 2, 7/2 = 3.5 → 4 → 8);
//   amax 0 (an all-zero group) → log2(0) = −∞ → b 0 (scale 2^-127, every code 0)

export const FP4_E2M1_MAX = 6;
/** the value of each magnitude code 0..7 */
export const FP4_E2M1_GRID = Object.freeze([0, 0.5, 1, 1.5, 2, 3, 4, 6] as const);

/** |x| ↦ magnitude code, cast_to_fp4's thresholds (ties to the even code) */
function magnitudeCode(a: number): number {
  if (a <= 0.25) return 0;
  if (a < 0.75) return 1;
  if (a <= 1.25) return 2;
  if (a < 1.75) return 3;
  if (a <= 2.5) return 4;
  if (a < 3.5) return 5;
  if (a <= 5) return 6;
  return 7;
}

/** `x` rounded to the e2m1 grid as compressed-tensors' cast_to_fp4 does (−0 for small negatives, NaN kept) */
export function roundFp4E2m1(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const v = FP4_E2M1_GRID[magnitudeCode(Math.abs(x))] as number;
  // torch.sign(x) · v: sign(±0) = 0 gives +0
  return x < 0 ? -v : x > 0 ? v : 0;
}

/** the e2m1 code of an already rounded value (pack_fp4_to_uint8: nearest magnitude, sign bit from signbit) */
export function encodeFp4E2m1(x: number): number {
  if (Number.isNaN(x)) return 0;
  const sign = x < 0 || Object.is(x, -0) ? 8 : 0;
  return sign | magnitudeCode(Math.abs(x));
}

/** the value of an e2m1 code 0..15 */
export function decodeFp4E2m1(code: number): number {
  const v = FP4_E2M1_GRID[code & 7] as number;
  return code & 8 ? -v : v;
}

/** every code's value (16 entries, −0 for code 8) */
export const FP4_E2M1_VALUES: Float32Array = Float32Array.from({ length: 16 }, (_, c) => decodeFp4E2m1(c));

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** the e8m0 byte of an MX group with max |x| `amax` (float32); `elementExponent` is floor(log2(element max)) */
export function mxScaleByte(amax: number, elementExponent = 2): number {
  F32[0] = amax;
  // round the mantissa up at ≥ 0.75 and keep sign and exponent (round_to_power_2 on float32)
  const biased = ((((U32[0] as number) + (1 << 21)) >>> 0) & 0xff800000) >>> 23;
  if (biased === 0) return 0;
  if (biased >= 255) return 255;
  return Math.min(255, Math.max(0, biased - elementExponent));
}

/** the scale an e8m0 byte stands for, 2^(b − 127) (exact in float32: 2^-127 is a subnormal) */
export function mxScaleValue(byte: number): number {
  return Math.fround(2 ** (byte - 127));
}

/** the e8m0 byte of an MX scale value 2^(b − 127): its float32 exponent field (2^-127, a subnormal, is 0) */
export function mxScaleByteOf(scale: number): number {
  F32[0] = scale;
  return ((U32[0] as number) >>> 23) & 0xff;
}
