// The three roundings ggml's reference quantizers use (ggml/src/ggml-quants.c), reproduced bit for bit, and
// the float32 / float16 steps around them. ggml computes in float32: every +, −, ×, ÷ and sqrt in the ports
// is one IEEE float32 operation, so the TypeScript wraps each one in Math.fround, in C's evaluation order.
//
//   1. nearest_int (K-quants, the Q6_K scales): adds 1.5·2^23 in float32 and reads the low mantissa bits of
//      the sum, so the float32 addition decides: round half to EVEN, the project's rule (algo/round.ts),
//      for |x| ≤ 4194303; outside that range ggml's trick returns what its bits say, and so does ours.
//   2. roundf (Q8_0 codes): round half AWAY from zero (2.5 → 3, −2.5 → −3). Differs from the project's
//      round-half-to-even on exact ties.
//   3. (int8_t)(v + 8.5f), (v + 16.5f), (v + 0.5f) (Q4_0, Q5_0, Q4_1 codes): the offset is added in float32
//      and the sum truncated; the sum is ≥ 0, so this is round half UP (toward +∞) of v, after a float32
//      addition that can itself carry v + 0.5 over the next integer (v = 0.49999997: 0.49999997 + 0.5f = 1.0f).
//      Differs from the project's rule on ties and on such near-ties.
//
// ggml's reference code is compiled into libggml-base for baseline x86-64 (no FMA), so no fused
// multiply-add merges a·b + c into one rounding; these ports assume the same.

import { float16FromBits, float16ToNumber, float32Bits } from './half.js';

const f = Math.fround;

const MAGIC = 12582912; // 1.5 · 2^23

/** ggml nearest_int(x) for a float32 x: round half to even (ggml's float32 bit trick outside ±2^22) */
export function nearestInt(x: number): number {
  if (x > -4194304 && x < 4194304) {
    // x + 1.5·2^23 lands in [2^23, 2^24), where float32 spacing is 1: its rounding is x's, half to even
    const r = Math.round(x) + 0; // + 0: an int has no −0
    return r - x === 0.5 && (r & 1) !== 0 ? r - 1 : r;
  }
  return (float32Bits(f(x + MAGIC)) & 0x007fffff) - 0x00400000;
}

/** C roundf to an integer code: round half away from zero */
export function roundAway(x: number): number {
  const r = Math.floor(Math.abs(x) + 0.5);
  return x < 0 ? 0 - r : r; // 0 − r: a code has no −0
}

/** C (int)(v + offset) with a float32 addition: truncation toward zero of the float32 sum */
export function truncOffset(v: number, offset: number): number {
  return Math.trunc(f(v + offset));
}

/** float16 bits of a float32 value, round to nearest even (GGML_FP32_TO_FP16) */
export function toHalf(x: number): number {
  return float16FromBits(float32Bits(x));
}

/** the float32 value of float16 bits (GGML_FP16_TO_FP32, exact) */
export function fromHalf(h: number): number {
  return float16ToNumber(h);
}

export function clampInt(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}

/** C's conversion of an int to uint8_t (modulo 256) */
export function toUint8(v: number): number {
  return v & 0xff;
}

/** C's conversion of an int to int8_t (modulo 256, two's complement) */
export function toInt8(v: number): number {
  return (v << 24) >> 24;
}
