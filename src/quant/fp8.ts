// fp8 e4m3fn, the element type of compressed-tensors' FP8 schemes and NVFP4's group scales.
// Sources: torch.float8_e4m3fn (c10/util/Float8_e4m3fn.h), compressed-tensors FP8_E4M3_DATA (quant_args.py),
// ONNX Cast with `saturate` (opset 19+), the OCP 8-bit floating point specification (E4M3).
//
// A byte s eeee mmm: 1 sign, 4 exponent bits (bias 7), 3 mantissa bits, no infinities.
//   1. e = 0: subnormal, value m · 2^-9 (0, 2^-9 … 7·2^-9)
//   2. e = 1..15: (1 + m/8) · 2^(e − 7)
//   3. e = 15, m = 7 (0x7F, 0xFF) is NaN, so the largest finite value is 0x7E = 1.75 · 2^8 = 448
//   worked examples: 0x38 = 1.0, 0x3C = 1.5, 0x7E = 448, 0x08 = 2^-6 (smallest normal), 0x01 = 2^-9,
//   0x80 = −0, 0xB8 = −1.0
// Encoding rounds to nearest, ties to even (1.0625 → 1.0, 1.1875 → 1.25, 2^-10 → 0, 3·2^-10 → 2^-8). Past 448
// it saturates to ±448 (ONNX Cast saturate=1) or gives NaN (torch); compressed-tensors clamps to ±448 before
// casting, so its casts never overflow. −0 keeps its sign; NaN encodes as 0x7F.

import { roundHalfEven } from './round.js';

export const FP8_E4M3_MAX = 448;
/** the smallest normal value, 2^-6 */
export const FP8_E4M3_MIN_NORMAL = 2 ** -6;
/** the spacing of subnormals, 2^-9 (also the smallest positive value) */
export const FP8_E4M3_SUBNORMAL_STEP = 2 ** -9;
const NAN = 0x7f;
const MAX_CODE = 0x7e;

/** the exponent e with 2^e ≤ a < 2^(e+1), for a finite a > 0 */
function exponentOf(a: number): number {
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e -= 1;
  else if (2 ** (e + 1) <= a) e += 1;
  return e;
}

/** the e4m3fn byte nearest to `x` (ties to even); out of range: ±448 when `saturate`, else NaN */
export function encodeFp8E4m3(x: number, saturate = true): number {
  if (Number.isNaN(x)) return NAN;
  const sign = x < 0 || Object.is(x, -0) ? 0x80 : 0;
  const a = Math.abs(x);
  let code: number;
  if (a === Infinity) code = MAX_CODE + 1;
  else if (a < FP8_E4M3_MIN_NORMAL) code = roundHalfEven(a / FP8_E4M3_SUBNORMAL_STEP);
  else {
    const e = exponentOf(a);
    // exact in double: a is at most a double, (a / 2^e − 1) · 8 needs no rounding
    code = ((e + 7) << 3) + roundHalfEven((a / 2 ** e - 1) * 8);
  }
  // a subnormal that rounds up to 8 is the smallest normal (0x08), and a mantissa of 8 carries into the exponent
  if (code > MAX_CODE) return sign | (saturate ? MAX_CODE : NAN);
  return sign | code;
}

/** the value of an e4m3fn byte */
export function decodeFp8E4m3(byte: number): number {
  const sign = byte & 0x80 ? -1 : 1;
  const e = (byte >> 3) & 0xf;
  const m = byte & 7;
  if (e === 15 && m === 7) return NaN;
  return sign * (e === 0 ? m * FP8_E4M3_SUBNORMAL_STEP : (1 + m / 8) * 2 ** (e - 7));
}

/** every byte's value, for decoding whole tensors */
export const FP8_E4M3_VALUES: Float32Array = Float32Array.from({ length: 256 }, (_, b) => decodeFp8E4m3(b));

/** `x` rounded to the nearest e4m3fn value, as torch's `x.to(float8_e4m3fn).to(float32)` (saturating) */
export function roundFp8E4m3(x: number, saturate = true): number {
  return FP8_E4M3_VALUES[encodeFp8E4m3(x, saturate)] as number;
}

/** e4m3fn bytes → float32 values */
export function decodeFp8E4m3Array(bytes: Uint8Array): Float32Array {
  const out = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = FP8_E4M3_VALUES[bytes[i] as number] as number;
  return out;
}

/** float32 values → e4m3fn bytes (saturating) */
export function encodeFp8E4m3Array(values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = encodeFp8E4m3(values[i] as number);
  return out;
}
