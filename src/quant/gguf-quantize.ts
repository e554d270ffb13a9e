// Whole tensors to and from the bytes of a GGUF tensor of a given ggml type. A weight [rows, cols] is
// stored row by row (GGUF ne = [cols, rows]); each row is cols / blockSize consecutive blocks. Plain float
// types are the values themselves: F32 as is, F16 and BF16 rounded to nearest even (as numpy's astype and
// gguf-py's BF16 conversion round).

import { fromBfloat16, fromFloat16, toBfloat16, toFloat16 } from './half.js';
import { dequantizeBlock, type GgufBlock, type GgufBlockFormat } from './gguf-block.js';
import { Q4_0, Q4_1, Q5_0, Q8_0 } from './gguf-blocks.js';
import { Q4_K, Q6_K } from './gguf-k-quants.js';
import { GgmlTypeError, rowBytes, type GgmlTypeInfo, type GgmlTypeName } from './gguf-types.js';

export type GgufBlockTypeName = Exclude<GgmlTypeName, 'F32' | 'F16' | 'BF16'>;

export const BLOCK_FORMATS: Readonly<Record<GgufBlockTypeName, GgufBlockFormat>> = { Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q6_K };

/** the block format of a quantized type; undefined for F32, F16 and BF16 */
export function blockFormat(type: GgmlTypeInfo): GgufBlockFormat | undefined {
  return (BLOCK_FORMATS as Readonly<Record<string, GgufBlockFormat>>)[type.name];
}

function checkShape(what: string, length: number, rows: number, cols: number): void {
  if (length !== rows * cols) throw new GgmlTypeError('row-not-whole-blocks', `${what} has ${length} values but [${rows}, ${cols}] needs ${rows * cols}`);
}

function floatBytes(a: Float32Array | Uint16Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
}

/** Σx²/cols of row r, in float32 as quantize_row_<type>_impl sums it */
export function rowSigma2(w: ArrayLike<number>, r: number, cols: number): number {
  let sum = 0;
  for (let j = 0; j < cols; j++) sum = Math.fround(sum + Math.fround((w[r * cols + j] as number) * (w[r * cols + j] as number)));
  return Math.fround(sum / cols);
}

/**
 * the bytes of w [rows, cols] as a GGUF tensor of `type`, quantized as ggml's quantize_<type> does: the
 * reference quantizer, or with `importance` (one value per column, llama.cpp's imatrix) the _impl one
 */
export function encodeTensor(type: GgmlTypeInfo, w: Float32Array, rows: number, cols: number, importance?: Float32Array): Uint8Array {
  checkShape('weight', w.length, rows, cols);
  if (type.name === 'F32') return floatBytes(w);
  if (type.name === 'F16') return floatBytes(toFloat16(w));
  if (type.name === 'BF16') return floatBytes(toBfloat16(w));
  if (importance !== undefined && importance.length !== cols) checkShape('importance', importance.length, 1, cols);
  const format = blockFormat(type)!;
  const out = new Uint8Array(rows * rowBytes(type, cols));
  const perRow = cols / type.blockSize;
  for (let r = 0; r < rows; r++) {
    const sigma2 = importance !== undefined ? rowSigma2(w, r, cols) : 0;
    for (let k = 0; k < perRow; k++) {
      const imp = importance !== undefined ? { weights: importance, offset: k * type.blockSize, rowSigma2: sigma2 } : undefined;
      format.pack(format.quantize(w, r * cols + k * type.blockSize, imp), out, (r * perRow + k) * type.typeSize);
    }
  }
  return out;
}

/** the bytes of blocks a method chose (row-major: row r's blocks are blocks[r·cols/blockSize …]) */
export function packBlocks(format: GgufBlockFormat, blocks: readonly GgufBlock[], rows: number, cols: number): Uint8Array {
  const { blockSize, typeSize } = format.type;
  checkShape('blocks', blocks.length * blockSize, rows, cols);
  rowBytes(format.type, cols);
  const out = new Uint8Array(blocks.length * typeSize);
  blocks.forEach((b, i) => format.pack(b, out, i * typeSize));
  return out;
}

/** the float32 values of a GGUF tensor's bytes (ggml's dequantize_row_<type>) */
export function decodeTensor(type: GgmlTypeInfo, bytes: Uint8Array, rows: number, cols: number): Float32Array {
  const expected = rows * rowBytes(type, cols);
  if (bytes.length !== expected) {
    throw new GgmlTypeError('row-not-whole-blocks', `${type.name} tensor [${rows}, ${cols}] needs ${expected} bytes, found ${bytes.length}`);
  }
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  if (type.name === 'F32') return new Float32Array(aligned.buffer, aligned.byteOffset, rows * cols).slice();
  if (type.name === 'F16') return fromFloat16(new Uint16Array(aligned.buffer, aligned.byteOffset, rows * cols));
  if (type.name === 'BF16') return fromBfloat16(new Uint16Array(aligned.buffer, aligned.byteOffset, rows * cols));
  const format = blockFormat(type)!;
  const out = new Float32Array(rows * cols);
  const blocks = (rows * cols) / type.blockSize;
  for (let b = 0; b < blocks; b++) dequantizeBlock(format, format.unpack(bytes, b * type.typeSize), out, b * type.blockSize);
  return out;
}
