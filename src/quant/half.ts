// float32 ⇄ bfloat16 and float32 ⇄ float16 on raw bit patterns (Node 20 has no Float16Array).
//
// bfloat16 = the top 16 bits of a float32: sign 1, exponent 8 (bias 127), mantissa 7.
// float16 (IEEE binary16): sign 1, exponent 5 (bias 15), mantissa 10; exponent 0 = subnormal (m · 2^-24),
// exponent 31 = Inf (m = 0) or NaN. Narrowing rounds to nearest, ties to even; NaN stays NaN (quiet bit set),
// too-large values become ±Inf, too-small ones ±0 or a float16 subnormal.
//
// worked example (bfloat16): 0x3F81_8000 lies exactly halfway between 0x3F81 and 0x3F82; the kept part 0x3F81
// is odd, so it rounds up to the even 0x3F82, while 0x3F80_8000 keeps the even 0x3F80.

/** bfloat16 bits of the float32 with bit pattern `bits` (a uint32), round to nearest even */
export function bfloat16FromBits(bits: number): number {
  const u = bits >>> 0;
  if ((u & 0x7f800000) === 0x7f800000 && (u & 0x007fffff) !== 0) return (u >>> 16) | 0x0040;
  const lsb = (u >>> 16) & 1;
  return ((u + 0x7fff + lsb) >>> 16) & 0xffff;
}

/** float16 bits of the float32 with bit pattern `bits` (a uint32), round to nearest even */
export function float16FromBits(bits: number): number {
  const u = bits >>> 0;
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x007fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x0200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // subnormal result: m = (1.mant) · 2^(e − 1) · 2^10, i.e. the 24-bit significand shifted right by 14 − e
    const shift = 14 - e;
    if (shift > 24) return sign;
    const sig = mant | 0x00800000;
    return sign | roundShift(sig, shift);
  }
  // a carry out of the mantissa bumps the exponent, and from e = 30 lands exactly on Inf (0x7c00)
  return sign | roundShift((e << 23) | mant, 13);
}

function roundShift(value: number, shift: number): number {
  const q = value >>> shift;
  const rem = value & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return rem > half || (rem === half && (q & 1) === 1) ? q + 1 : q;
}

/** the float32 value of bfloat16 bits (exact) */
export function bfloat16ToNumber(h: number): number {
  SCRATCH_U32[0] = (h & 0xffff) << 16;
  return SCRATCH_F32[0]!;
}

/** the float32 value of float16 bits (exact) */
export function float16ToNumber(h: number): number {
  return float16Table()[h & 0xffff]!;
}

/** float32 bit pattern of the number `x` after rounding it to float32 */
export function float32Bits(x: number): number {
  SCRATCH_F32[0] = x;
  return SCRATCH_U32[0]!;
}

const SCRATCH_F32 = new Float32Array(1);
const SCRATCH_U32 = new Uint32Array(SCRATCH_F32.buffer);

export function toBfloat16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < bits.length; i++) out[i] = bfloat16FromBits(bits[i]!);
  return out;
}

export function fromBfloat16(src: Uint16Array): Float32Array {
  const out = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i]! << 16;
  return new Float32Array(out.buffer);
}

export function toFloat16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < bits.length; i++) out[i] = float16FromBits(bits[i]!);
  return out;
}

export function fromFloat16(src: Uint16Array): Float32Array {
  const table = float16Table();
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]!]!;
  return out;
}

let TABLE: Float32Array | undefined;

// all 65536 float16 values, built once on first use (256 KiB)
function float16Table(): Float32Array {
  if (TABLE !== undefined) return TABLE;
  const bits = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) bits[h] = float16ToFloat32Bits(h);
  TABLE = new Float32Array(bits.buffer);
  return TABLE;
}

function float16ToFloat32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x03ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp - 15 + 127) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  // subnormal: normalise the mantissa so its leading 1 becomes the implicit bit
  let m = mant;
  let e = -14;
  while ((m & 0x0400) === 0) {
    m <<= 1;
    e--;
  }
  return (sign | ((e + 127) << 23) | ((m & 0x03ff) << 13)) >>> 0;
}
