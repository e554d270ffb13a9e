// One quantized GGUF block as data, and the interface every ggml block type implements. The qparams are
// exactly what the block stores (float16 bits, 6-bit or 8-bit sub-scales), the codes exactly the integers it
// stores, so a method that picks its own codes (GPTQ, AWQ, AutoRound) packs them with no second rounding:
//
//   qparams(x)          → the scales ggml's reference quantizer would store for these weights
//   code(qp, i, x)      → the code of one value at position i under stored qparams (GPTQ's column loop)
//   value(qp, i, q)     → what llama.cpp dequantizes code q at position i to
//   quantize(x)         → qparams + codes, byte for byte what ggml's quantize_row_<type>_ref writes
//   pack / unpack       → the block's bytes
//
// For 32-weight blocks ggml's reference quantizer rounds the codes with the float32 scale *before* it is
// rounded to float16 (it keeps 1/d in float32), so quantize(x).codes can differ from code(qparams(x), i, x)
// on a value within a float16 rounding of a code boundary; K-quants compute their codes from the stored
// scales, so there the two agree.

import type { GgmlTypeInfo } from './gguf-types.js';

export interface GgufBlockQParams {
  /** float16 bits of d: the block scale (Q8_0, Q4_0, Q4_1, Q5_0) or the super-block scale of the sub-scales (K-quants) */
  readonly d: number;
  /** float16 bits of m: Q4_1's block minimum, Q4_K's dmin (super-block scale of the sub-minimums); 0 for the others */
  readonly m: number;
  /** Q4_K: 8 six-bit sub-scales (0..63); Q6_K: 16 signed 8-bit sub-scales; empty for 32-weight blocks */
  readonly scales: Int8Array;
  /** Q4_K: 8 six-bit sub-minimums (0..63); empty for the others */
  readonly mins: Int8Array;
}

export interface GgufBlock {
  readonly qparams: GgufBlockQParams;
  /**
   * one code per weight in weight order (not packed order), as the block stores it:
   * Q8_0 −128..127; Q4_0, Q4_1, Q4_K 0..15; Q5_0 0..31; Q6_K 0..63
   */
  readonly codes: Int8Array;
}

/**
 * An importance per weight, as llama.cpp's imatrix gives it (the mean squared activation of each input
 * column; GPTQ's Hessian diagonal 2·E[x²] is proportional to it). With one, ggml quantizes by
 * quantize_row_<type>_impl instead of the reference quantizer (Q8_0 ignores it, as ggml does).
 */
export interface GgufImportance {
  /** importance of each column of the row; the block reads weights[offset, offset + blockSize) */
  readonly weights: ArrayLike<number>;
  readonly offset: number;
  /** Σx²/cols over the block's whole row (Q4_0, Q4_1, Q5_0 weight each value by imatrix · sqrt(sigma2 + x²)) */
  readonly rowSigma2: number;
}

export interface GgufBlockFormat {
  readonly type: GgmlTypeInfo;
  /** the smallest and largest code the block can store */
  readonly codeRange: readonly [number, number];
  /** ggml's quantizer on x[offset, offset + blockSize) (reference, or _impl with importance): qparams and codes, bit-exact */
  quantize(x: ArrayLike<number>, offset?: number, importance?: GgufImportance): GgufBlock;
  /** the qparams ggml's quantizer stores for x[offset, offset + blockSize) */
  qparams(x: ArrayLike<number>, offset?: number, importance?: GgufImportance): GgufBlockQParams;
  /** the code of value `x` at position `i` of a block under stored `qp`, clamped to codeRange */
  code(qp: GgufBlockQParams, i: number, x: number): number;
  /** the float32 value code `q` at position `i` decodes to (ggml's dequantize_row_<type>) */
  value(qp: GgufBlockQParams, i: number, q: number): number;
  /** write the block's typeSize bytes at out[offset] */
  pack(block: GgufBlock, out: Uint8Array, offset: number): void;
  unpack(bytes: Uint8Array, offset: number): GgufBlock;
}

export const NO_SUBSCALES = new Int8Array(0);

export function readHalf(bytes: Uint8Array, at: number): number {
  return (bytes[at] as number) | ((bytes[at + 1] as number) << 8);
}

export function writeHalf(out: Uint8Array, at: number, h: number): void {
  out[at] = h & 0xff;
  out[at + 1] = (h >>> 8) & 0xff;
}

/** dequantize a whole block into out[offset, offset + blockSize) */
export function dequantizeBlock(format: GgufBlockFormat, block: GgufBlock, out: Float32Array, offset = 0): void {
  for (let i = 0; i < format.type.blockSize; i++) out[offset + i] = format.value(block.qparams, i, block.codes[i] as number);
}

/** codes of x[offset, offset + blockSize) under fixed stored qparams (e.g. scales a method chose) */
export function quantizeWith(format: GgufBlockFormat, qp: GgufBlockQParams, x: ArrayLike<number>, offset = 0): GgufBlock {
  const codes = new Int8Array(format.type.blockSize);
  for (let i = 0; i < codes.length; i++) codes[i] = format.code(qp, i, x[offset + i] as number);
  return { qparams: qp, codes };
}
