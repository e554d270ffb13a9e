// A weight quantized to a GGUF block type, as methods hand it on and layer states keep it: the codes as
// the blocks store them, each block's stored qparams, and the values llama.cpp dequantizes them to.
//
// Stored qparams of one block, as int16 (layer state tensor `<m>.weight_gguf`, [rows, blocks, width]):
//   1. float16 bits of d                       (every type)
//   2. float16 bits of m                       (Q4_1's minimum, Q4_K's dmin; 0 for the others)
//   3. the sub-scales, then the sub-minimums   (Q4_K: 8 + 8 six-bit values; Q6_K: 16 int8 scales; none else)
//   width = 2 + subs: Q8_0, Q4_0, Q4_1, Q5_0 → 2; Q4_K → 18; Q6_K → 18
//   worked example, Q4_0 block with d = −2.875 (float16 0xC1C0): [0xC1C0 as int16 = −15936, 0]
// Packing is then header + codes per block (formats: the block's bytes), with no rounding left to do.

import type { GgufBlockQParams } from './gguf-block.js';
import { BLOCK_FORMATS, packBlocks, type GgufBlockTypeName } from './gguf-quantize.js';
import type { GgufBlockGrid } from './gguf-grid.js';
import { GGML_TYPES } from './gguf-types.js';

export interface GgufWeight {
  readonly type: GgufBlockTypeName;
  readonly rows: number;
  readonly cols: number;
  /** [rows, cols] as the blocks store them (Q8_0 −128..127, Q4_0/Q4_1/Q4_K 0..15, Q5_0 0..31, Q6_K 0..63) */
  readonly codes: Int8Array;
  /** [rows, blocks, qparamWidth(type)], see the header */
  readonly qparams: Int16Array;
  /** [rows, cols] float32, exactly what llama.cpp's dequantize_row_<type> gives */
  readonly dequantized: Float32Array;
}

const SUBS: Readonly<Record<GgufBlockTypeName, [number, number]>> = { Q8_0: [0, 0], Q4_0: [0, 0], Q4_1: [0, 0], Q5_0: [0, 0], Q4_K: [8, 8], Q6_K: [16, 0] };

export function qparamWidth(type: GgufBlockTypeName): number {
  const [s, m] = SUBS[type];
  return 2 + s + m;
}

const toInt16 = (h: number): number => (h << 16) >> 16;

/** blocks' qparams (row-major) as the int16 layout above */
export function encodeQParams(type: GgufBlockTypeName, list: readonly GgufBlockQParams[]): Int16Array {
  const w = qparamWidth(type);
  const out = new Int16Array(list.length * w);
  list.forEach((qp, k) => {
    out[k * w] = toInt16(qp.d);
    out[k * w + 1] = toInt16(qp.m);
    out.set(qp.scales, k * w + 2);
    out.set(qp.mins, k * w + 2 + qp.scales.length);
  });
  return out;
}

/** the int16 layout back to block qparams */
export function decodeQParams(type: GgufBlockTypeName, a: Int16Array): GgufBlockQParams[] {
  const w = qparamWidth(type);
  const [s, m] = SUBS[type];
  const out: GgufBlockQParams[] = [];
  for (let k = 0; k < a.length / w; k++) {
    out.push({
      d: (a[k * w] as number) & 0xffff,
      m: (a[k * w + 1] as number) & 0xffff,
      scales: Int8Array.from(a.subarray(k * w + 2, k * w + 2 + s)),
      mins: Int8Array.from(a.subarray(k * w + 2 + s, k * w + 2 + s + m)),
    });
  }
  return out;
}

/** the weight a grid holds once every column was quantized (GPTQ, or any method walking columns) */
export function gridWeight(type: GgufBlockTypeName, grid: GgufBlockGrid): GgufWeight {
  const blocks = grid.toBlocks();
  return fromBlocks(type, grid.rows, grid.cols, blocks.map((b) => b.qparams), grid.codes);
}

/** a weight from its blocks' stored qparams (row-major) and codes, with llama.cpp's dequantized values */
export function fromBlocks(type: GgufBlockTypeName, rows: number, cols: number, qparams: readonly GgufBlockQParams[], codes: Int8Array): GgufWeight {
  const format = BLOCK_FORMATS[type];
  const size = format.type.blockSize;
  const perRow = cols / size;
  const dequantized = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const qp = qparams[r * perRow + Math.floor(c / size)] as GgufBlockQParams;
      dequantized[r * cols + c] = format.value(qp, c % size, codes[r * cols + c] as number);
    }
  }
  return { type, rows, cols, codes, qparams: encodeQParams(type, qparams), dequantized };
}

/** round to nearest as ggml's reference quantizer does it (llama-quantize without an imatrix): its very bytes */
export function quantizeGgufRtn(type: GgufBlockTypeName, w: Float32Array, rows: number, cols: number): GgufWeight {
  const format = BLOCK_FORMATS[type];
  const size = GGML_TYPES[type].blockSize;
  const perRow = cols / size;
  if (!Number.isInteger(perRow) || w.length !== rows * cols) throw new RangeError(`${type}: a weight [${rows}, ${cols}] is not whole blocks of ${size}`);
  const codes = new Int8Array(rows * cols);
  const qparams: GgufBlockQParams[] = [];
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < perRow; b++) {
      const block = format.quantize(w, r * cols + b * size);
      qparams.push(block.qparams);
      codes.set(block.codes, r * cols + b * size);
    }
  }
  return fromBlocks(type, rows, cols, qparams, codes);
}

/** the GGUF tensor data of a quantized weight: each block's stored qparams and codes, nothing re-rounded */
export function packGgufWeight(type: GgufBlockTypeName, codes: Int8Array, qparams: Int16Array, rows: number, cols: number): Uint8Array {
  const size = GGML_TYPES[type].blockSize;
  const list = decodeQParams(type, qparams);
  const blocks = list.map((qp, k) => {
    const start = Math.floor(k / (cols / size)) * cols + (k % (cols / size)) * size;
    return { qparams: qp, codes: codes.subarray(start, start + size) };
  });
  return packBlocks(BLOCK_FORMATS[type], blocks, rows, cols);
}

/** llama.cpp's step between consecutive codes of each sub-block of `group` columns, [rows, cols / group] */
export function codeSteps(weight: GgufWeight, group: number): Float32Array {
  const format = BLOCK_FORMATS[weight.type];
  const size = format.type.blockSize;
  const list = decodeQParams(weight.type, weight.qparams);
  const perRow = weight.cols / size;
  const out = new Float32Array((weight.rows * weight.cols) / group);
  for (let r = 0; r < weight.rows; r++) {
    for (let g = 0; g < weight.cols / group; g++) {
      const c = g * group;
      const qp = list[r * perRow + Math.floor(c / size)] as GgufBlockQParams;
      out[r * (weight.cols / group) + g] = Math.fround(format.value(qp, c % size, 1) - format.value(qp, c % size, 0));
    }
  }
  return out;
}
