// fp4 e2m1 codes packed two per byte, compressed-tensors `nvfp4-pack-quantized` and `mxfp4-pack-quantized`
// (`weight_packed` uint8). Source: compressed-tensors pack_fp4_to_uint8 / unpack_fp4_from_uint8.
//
// A weight [rows, cols] of e2m1 codes (quant/fp4.ts: bit 3 the sign, bits 0..2 the magnitude index):
//   1. cols must be even (compressed-tensors: "tensor must have an even number of columns")
//   2. byte j of a row = code[2j] | code[2j+1] << 4 (element 0 in the low nibble) → uint8 [rows, cols / 2]
//   worked example: values [1, −0.5, 6, 0] → codes [2, 9, 7, 0] → bytes [0x92, 0x07]
// MX scales are stored beside it as their e8m0 bytes (weight_scale uint8), NVFP4 scales as float8_e4m3fn.

import { PackError } from './pack-quantized.js';

function checkShape(what: string, length: number, rows: number, cols: number): void {
  if (cols % 2 !== 0) throw new PackError(`fp4 packing needs an even number of columns, found ${cols}`);
  if (length !== rows * cols) throw new PackError(`${what} has ${length} values but [${rows}, ${cols}] needs ${rows * cols}`);
}

/** e2m1 codes [rows, cols] → weight_packed uint8 [rows, cols / 2] */
export function packFp4(codes: Int8Array, rows: number, cols: number): Uint8Array {
  checkShape('codes', codes.length, rows, cols);
  const out = new Uint8Array(codes.length / 2);
  for (let j = 0; j < out.length; j++) out[j] = ((codes[2 * j] as number) & 15) | (((codes[2 * j + 1] as number) & 15) << 4);
  return out;
}

/** weight_packed uint8 [rows, cols / 2] → e2m1 codes [rows, cols] */
export function unpackFp4(packed: Uint8Array, rows: number, cols: number): Int8Array {
  checkShape('packed codes', packed.length * 2, rows, cols);
  const out = new Int8Array(rows * cols);
  for (let j = 0; j < packed.length; j++) {
    out[2 * j] = (packed[j] as number) & 15;
    out[2 * j + 1] = (packed[j] as number) >> 4;
  }
  return out;
}
