// Bit packing of integer codes: compressed-tensors `pack-quantized` (int32 words) and onnxruntime
// `com.microsoft::MatMulNBits` (uint8 blobs). Sources: compressed-tensors
// compressors/pack_quantized (pack_to_int32, unpack_from_int32, zero-point packing along dim 0) and
// onnxruntime docs/ContribOperators.md (MatMulNBits inputs B and zero_points).
//
// pack-quantized, codes q of b bits (b ≤ 8) in a row of `cols` values:
//   1. shift to unsigned: u = q + 2^(b−1)                      (int4: −8..7 → 0..15)
//   2. lay the row out as one bit stream, element i at bits [i·b, i·b + b)
//   3. cut the stream into int32 words, bit 0 of word w is stream bit 32·w (element 0 is least significant)
//   4. pad the last word with zero bits (u = 0, i.e. q = −2^(b−1)); a row takes ceil(cols·b / 32) words
//   worked example, int4 [1, −2, 0, 7, −8, 3, 0, 0]: u = [9, 6, 8, 15, 0, 11, 8, 8]
//     word = 9 | 6<<4 | 8<<8 | 15<<12 | 0<<16 | 11<<20 | 8<<24 | 8<<28 = 0x88B0F869 = −2001667991 as int32
//   zero points [rows, groups] pack the same way along the OUTPUT dim: column g of the zero points is
//   one stream → weight_zero_point int32 [ceil(rows·b / 32), groups].
//
// MatMulNBits, weight [N = out, K = in], block size B (power of two ≥ 16):
//   1. split each row into k_blocks = ceil(K / B) blocks, the last one padded to B with u = 2^(b−1)
//   2. shift to unsigned as above; pack each block low bits first into B·b/8 bytes
//      (int4: byte j = u[2j] | u[2j+1] << 4)  → B uint8 [N, k_blocks, B·b/8]
//   3. scales are weight_scale as is: float [N, k_blocks] (= [N · k_blocks])
//   4. zero points, if any: u = zp + 2^(b−1), each row packed low bits first into
//      ceil(k_blocks·b / 8) bytes → uint8 [N, ceil(k_blocks·b / 8)]; absent means 2^(b−1) (q's zero)
//   so for symmetric int4 with K a multiple of B, B's bytes equal weight_packed's bytes (little-endian).

import { ReasonedError } from '../diag/failure.js';

export class PackError extends ReasonedError<'pack-shape-mismatch'> {
  constructor(message: string) {
    super('pack-shape-mismatch', message);
  }
}

function checkBits(bits: number): void {
  if (!Number.isInteger(bits) || bits < 1 || bits > 8) throw new PackError(`num_bits ${bits} cannot be packed; expected an integer from 1 to 8`);
}

function checkLength(what: string, length: number, rows: number, cols: number): void {
  if (length !== rows * cols) throw new PackError(`${what} has ${length} values but [${rows}, ${cols}] needs ${rows * cols}`);
}

/** int32 words per row of `cols` b-bit values */
export function packedWidth(cols: number, bits: number): number {
  return Math.ceil((cols * bits) / 32);
}

/** pack the stream value(0..n−1) into the int32 words out[base + w·stride] */
function packStream(n: number, bits: number, value: (i: number) => number, out: Int32Array, base: number, stride: number): void {
  const offset = 1 << (bits - 1);
  const mask = (1 << bits) - 1;
  for (let i = 0; i < n; i++) {
    const u = (value(i) + offset) & mask;
    const pos = i * bits;
    const word = pos >>> 5;
    const shift = pos & 31;
    const w = base + word * stride;
    out[w] = (out[w] as number) | (u << shift);
    if (shift + bits > 32) {
      const w2 = base + (word + 1) * stride;
      out[w2] = (out[w2] as number) | (u >>> (32 - shift));
    }
  }
}

function unpackStream(n: number, bits: number, packed: Int32Array, base: number, stride: number, put: (i: number, q: number) => void): void {
  const offset = 1 << (bits - 1);
  const mask = (1 << bits) - 1;
  for (let i = 0; i < n; i++) {
    const pos = i * bits;
    const word = pos >>> 5;
    const shift = pos & 31;
    let u = (packed[base + word * stride] as number) >>> shift;
    if (shift + bits > 32) u |= (packed[base + (word + 1) * stride] as number) << (32 - shift);
    put(i, (u & mask) - offset);
  }
}

/** codes [rows, cols] → weight_packed int32 [rows, ceil(cols·bits/32)] */
export function packToInt32(codes: Int8Array, rows: number, cols: number, bits: number): Int32Array {
  checkBits(bits);
  checkLength('codes', codes.length, rows, cols);
  const width = packedWidth(cols, bits);
  const out = new Int32Array(rows * width);
  for (let r = 0; r < rows; r++) packStream(cols, bits, (i) => codes[r * cols + i] as number, out, r * width, 1);
  return out;
}

/** weight_packed int32 [rows, ceil(cols·bits/32)] → codes [rows, cols] */
export function unpackFromInt32(packed: Int32Array, rows: number, cols: number, bits: number): Int8Array {
  checkBits(bits);
  const width = packedWidth(cols, bits);
  checkLength('packed', packed.length, rows, width);
  const out = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) unpackStream(cols, bits, packed, r * width, 1, (i, q) => (out[r * cols + i] = q));
  return out;
}

/** zero points [rows, groups] → weight_zero_point int32 [ceil(rows·bits/32), groups], packed along rows */
export function packZeroPoints(zeroPoint: Int8Array, rows: number, groups: number, bits: number): Int32Array {
  checkBits(bits);
  checkLength('zero points', zeroPoint.length, rows, groups);
  const out = new Int32Array(packedWidth(rows, bits) * groups);
  for (let g = 0; g < groups; g++) packStream(rows, bits, (i) => zeroPoint[i * groups + g] as number, out, g, groups);
  return out;
}

/** weight_zero_point int32 [ceil(rows·bits/32), groups] → zero points [rows, groups] */
export function unpackZeroPoints(packed: Int32Array, rows: number, groups: number, bits: number): Int8Array {
  checkBits(bits);
  checkLength('packed zero points', packed.length, packedWidth(rows, bits), groups);
  const out = new Int8Array(rows * groups);
  for (let g = 0; g < groups; g++) unpackStream(rows, bits, packed, g, groups, (i, q) => (out[i * groups + g] = q));
  return out;
}

export interface MatMulNBitsWeight {
  /** input B, uint8 [N, kBlocks, blobSize] */
  readonly data: Uint8Array;
  readonly dims: readonly [number, number, number];
  readonly kBlocks: number;
}

function packBytes(n: number, bits: number, value: (i: number) => number, out: Uint8Array, base: number): void {
  for (let i = 0; i < n; i++) {
    const pos = i * bits;
    const u = value(i) << (pos & 7);
    out[base + (pos >>> 3)] = (out[base + (pos >>> 3)] as number) | (u & 0xff);
    if ((pos & 7) + bits > 8) out[base + (pos >>> 3) + 1] = (out[base + (pos >>> 3) + 1] as number) | (u >>> 8);
  }
}

/** codes [N, K] → MatMulNBits input B, blocks of `blockSize` along K, code + 2^(bits−1) low bits first */
export function packMatMulNBits(codes: Int8Array, rows: number, cols: number, blockSize: number, bits = 4): MatMulNBitsWeight {
  checkBits(bits);
  checkLength('codes', codes.length, rows, cols);
  if (!Number.isInteger(blockSize) || blockSize < 16 || (blockSize & (blockSize - 1)) !== 0) {
    throw new PackError(`MatMulNBits block_size ${blockSize} is invalid; expected a power of two ≥ 16`);
  }
  const kBlocks = Math.ceil(cols / blockSize);
  const blob = (blockSize * bits) / 8;
  const offset = 1 << (bits - 1);
  const data = new Uint8Array(rows * kBlocks * blob);
  for (let r = 0; r < rows; r++) {
    // the padded tail of the last block holds the unsigned zero (q = 0)
    packBytes(kBlocks * blockSize, bits, (i) => (i < cols ? (codes[r * cols + i] as number) : 0) + offset, data, r * kBlocks * blob);
  }
  return { data, dims: [rows, kBlocks, blob], kBlocks };
}

/** zero points [N, kBlocks] → MatMulNBits zero_points uint8 [N, ceil(kBlocks·bits/8)], zp + 2^(bits−1) */
export function packMatMulNBitsZeroPoints(zeroPoint: Int8Array, rows: number, kBlocks: number, bits = 4): Uint8Array {
  checkBits(bits);
  checkLength('zero points', zeroPoint.length, rows, kBlocks);
  const width = Math.ceil((kBlocks * bits) / 8);
  const offset = 1 << (bits - 1);
  const out = new Uint8Array(rows * width);
  for (let r = 0; r < rows; r++) packBytes(kBlocks, bits, (i) => (zeroPoint[r * kBlocks + i] as number) + offset, out, r * width);
  return out;
}
