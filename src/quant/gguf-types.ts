// The ggml tensor types a GGUF file of quantforge can hold, as data: the enum value GGUF stores
// (ggml/include/ggml.h `enum ggml_type`), the weights per block and the bytes per block
// (ggml/src/ggml-common.h block structs), hence the bytes per weight.
//
//   type   block  bytes  bits/weight  layout of one block
//   F32        1      4     32        float32
//   F16        1      2     16        float16
//   BF16       1      2     16        bfloat16
//   Q8_0      32     34      8.5      d f16 | qs[32] int8
//   Q4_0      32     18      4.5      d f16 | qs[16] nibbles
//   Q4_1      32     20      5.0      d f16 | m f16 | qs[16] nibbles
//   Q5_0      32     22      5.5      d f16 | qh[4] fifth bits | qs[16] nibbles
//   Q4_K     256    144      4.5      d f16 | dmin f16 | scales[12] (8 × 6-bit scale + 8 × 6-bit min) | qs[128]
//   Q6_K     256    210      6.5625   ql[128] low nibbles | qh[64] high 2 bits | scales[16] int8 | d f16
//
// A row (ne[0] = in_features values) must be a whole number of blocks: ggml refuses anything else.

import { ReasonedError, type GgufReason } from '../diag/failure.js';

export const GGML_TYPE_NAMES = ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q4_K', 'Q6_K'] as const;
export type GgmlTypeName = (typeof GGML_TYPE_NAMES)[number];

export interface GgmlTypeInfo {
  readonly name: GgmlTypeName;
  /** the `enum ggml_type` value stored in a GGUF tensor info */
  readonly id: number;
  /** weights per block (1 for plain floats) */
  readonly blockSize: number;
  /** bytes per block */
  readonly typeSize: number;
}

export const GGML_TYPES: Readonly<Record<GgmlTypeName, GgmlTypeInfo>> = {
  F32: { name: 'F32', id: 0, blockSize: 1, typeSize: 4 },
  F16: { name: 'F16', id: 1, blockSize: 1, typeSize: 2 },
  BF16: { name: 'BF16', id: 30, blockSize: 1, typeSize: 2 },
  Q8_0: { name: 'Q8_0', id: 8, blockSize: 32, typeSize: 34 },
  Q4_0: { name: 'Q4_0', id: 2, blockSize: 32, typeSize: 18 },
  Q4_1: { name: 'Q4_1', id: 3, blockSize: 32, typeSize: 20 },
  Q5_0: { name: 'Q5_0', id: 6, blockSize: 32, typeSize: 22 },
  Q4_K: { name: 'Q4_K', id: 12, blockSize: 256, typeSize: 144 },
  Q6_K: { name: 'Q6_K', id: 14, blockSize: 256, typeSize: 210 },
};

export class GgmlTypeError extends ReasonedError<Extract<GgufReason, 'unknown-ggml-type' | 'row-not-whole-blocks'>> {}

export function ggmlTypeById(id: number): GgmlTypeInfo {
  const t = Object.values(GGML_TYPES).find((x) => x.id === id);
  if (t === undefined) {
    const known = Object.values(GGML_TYPES).map((x) => `${x.name}=${x.id}`).join(', ');
    throw new GgmlTypeError('unknown-ggml-type', `ggml type ${id} is not one quantforge reads or writes; known: ${known}`);
  }
  return t;
}

export function ggmlType(name: string): GgmlTypeInfo {
  if (!(GGML_TYPE_NAMES as readonly string[]).includes(name)) {
    throw new GgmlTypeError('unknown-ggml-type', `ggml type "${name}" is not supported; expected one of: ${GGML_TYPE_NAMES.join(', ')}`);
  }
  return GGML_TYPES[name as GgmlTypeName];
}

export function bitsPerWeight(type: GgmlTypeInfo): number {
  return (type.typeSize * 8) / type.blockSize;
}

/** whether a row of `cols` values can be stored in `type` */
export function rowFits(type: GgmlTypeInfo, cols: number): boolean {
  return cols % type.blockSize === 0;
}

/** bytes of one row of `cols` values (ggml_row_size) */
export function rowBytes(type: GgmlTypeInfo, cols: number): number {
  if (!rowFits(type, cols)) {
    throw new GgmlTypeError('row-not-whole-blocks', `a row of ${cols} values is not a whole number of ${type.name} blocks of ${type.blockSize}`);
  }
  return (cols / type.blockSize) * type.typeSize;
}
