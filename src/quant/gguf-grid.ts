// A weight [rows, cols] as GGUF blocks, the way a quantization method walks it: GPTQ's column loop, AWQ's
// and AutoRound's fake quantization. Each block's qparams are fixed once, from the values the block holds
// when the method reaches it (GPTQ: when its column loop enters the block's first column, from the
// error-updated weights), computed exactly as ggml's reference quantizer computes and stores them; every
// column is then quantized under those stored qparams, so the codes a method chooses pack with no second
// rounding and llama.cpp dequantizes exactly the values the method saw.
//
//   const grid = new GgufBlockGrid(Q4_K, rows, cols);
//   for (let c = 0; c < cols; c++) {
//     if (c % grid.blockSize === 0) grid.fixBlock(c / grid.blockSize, w);      // or fixBlock(b, w, stored)
//     const dq = grid.quantizeColumn(c, column(w, c));                        // codes kept in the grid
//     ... GPTQ: err = (w[:, c] − dq) / d; update the columns after c ...
//   }
//   const bytes = grid.pack();                                                // the GGUF tensor data
//
// A block of 256 (K-quants) spans two GPTQ column blocks of 128: the method decides which values it hands
// to fixBlock. With an importance per column (llama.cpp's imatrix; a method can pass its Hessian diagonal),
// the qparams follow ggml's quantize_row_<type>_impl instead of the reference quantizer. For K-quants, quantizeColumn under untouched weights reproduces ggml's codes exactly; for
// 32-weight types ggml rounds with the float32 scale, quantizeColumn with the stored float16 one (see
// gguf-block.ts), which agrees on all but ~0.04–0.7% of real weights.

import { type GgufBlock, type GgufBlockFormat, type GgufBlockQParams } from './gguf-block.js';
import { packBlocks, rowSigma2 } from './gguf-quantize.js';
import { rowBytes } from './gguf-types.js';

export class GgufBlockGrid {
  readonly format: GgufBlockFormat;
  readonly rows: number;
  readonly cols: number;
  readonly blockSize: number;
  /** blocks per row */
  readonly blocks: number;
  /** [rows × blocks] stored qparams, undefined until fixed */
  readonly qparams: (GgufBlockQParams | undefined)[];
  /** [rows, cols] codes as the blocks store them */
  readonly codes: Int8Array;

  /** one importance per column (llama.cpp's imatrix; e.g. the Hessian diagonal): qparams then follow ggml's _impl quantizers */
  readonly importance: Float32Array | undefined;

  constructor(format: GgufBlockFormat, rows: number, cols: number, importance?: Float32Array) {
    rowBytes(format.type, cols);
    if (importance !== undefined && importance.length !== cols) throw new RangeError(`importance has ${importance.length} values for ${cols} columns`);
    this.importance = importance;
    this.format = format;
    this.rows = rows;
    this.cols = cols;
    this.blockSize = format.type.blockSize;
    this.blocks = cols / this.blockSize;
    this.qparams = new Array(rows * this.blocks).fill(undefined);
    this.codes = new Int8Array(rows * cols);
  }

  /**
   * fix block `b` of every row: from the current values w [rows, cols] (ggml's reference qparams), or to
   * `given` qparams per row (scales a method chose, or read from an existing file)
   */
  fixBlock(b: number, w?: Float32Array, given?: readonly GgufBlockQParams[]): void {
    if (b < 0 || b >= this.blocks) throw new RangeError(`block ${b} is outside 0..${this.blocks - 1}`);
    for (let r = 0; r < this.rows; r++) {
      const imp = this.importance !== undefined && w !== undefined ? { weights: this.importance, offset: b * this.blockSize, rowSigma2: rowSigma2(w, r, this.cols) } : undefined;
      const qp = given?.[r] ?? (w !== undefined ? this.format.qparams(w, r * this.cols + b * this.blockSize, imp) : undefined);
      if (qp === undefined) throw new Error(`fixBlock(${b}): neither weights nor qparams for row ${r}`);
      this.qparams[r * this.blocks + b] = qp;
    }
  }

  /** quantize column c (x: its `rows` values) under the fixed qparams; returns the dequantized values */
  quantizeColumn(c: number, x: ArrayLike<number>, out = new Float32Array(this.rows)): Float32Array {
    const b = Math.floor(c / this.blockSize);
    const i = c % this.blockSize;
    for (let r = 0; r < this.rows; r++) {
      const qp = this.qparams[r * this.blocks + b];
      if (qp === undefined) throw new Error(`column ${c}: block ${b} of row ${r} has no qparams; call fixBlock(${b}) first`);
      this.codes[r * this.cols + c] = this.format.code(qp, i, x[r] as number);
      out[r] = this.format.value(qp, i, this.codes[r * this.cols + c] as number);
    }
    return out;
  }

  /** the blocks, row-major */
  toBlocks(): GgufBlock[] {
    return this.qparams.map((qp, k) => {
      if (qp === undefined) throw new Error(`block ${k % this.blocks} of row ${Math.floor(k / this.blocks)} was never fixed`);
      const r = Math.floor(k / this.blocks);
      const start = r * this.cols + (k % this.blocks) * this.blockSize;
      return { qparams: qp, codes: this.codes.slice(start, start + this.blockSize) };
    });
  }

  /** the GGUF tensor data of the grid */
  pack(): Uint8Array {
    return packBlocks(this.format, this.toBlocks(), this.rows, this.cols);
  }
}
