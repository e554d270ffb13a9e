import { describe, expect, test } from 'vitest';
import { seededRandom } from '../../src/random.js';
import { GgufBlockGrid } from '../../src/quant/gguf-grid.js';
import { BLOCK_FORMATS, decodeTensor, encodeTensor } from '../../src/quant/gguf-quantize.js';
import { GGML_TYPES } from '../../src/quant/gguf-types.js';

function weight(rows: number, cols: number, seed: number): Float32Array {
  const rand = seededRandom(seed);
  return Float32Array.from({ length: rows * cols }, () => (rand() + rand() + rand() - 1.5) * 0.1);
}

const column = (w: Float32Array, rows: number, cols: number, c: number) => Float32Array.from({ length: rows }, (_, r) => w[r * cols + c]!);

function walk(grid: GgufBlockGrid, w: Float32Array): Float32Array {
  const dq = new Float32Array(w.length);
  for (let c = 0; c < grid.cols; c++) {
    if (c % grid.blockSize === 0) grid.fixBlock(c / grid.blockSize, w);
    grid.quantizeColumn(c, column(w, grid.rows, grid.cols, c)).forEach((v, r) => (dq[r * grid.cols + c] = v));
  }
  return dq;
}

describe('GgufBlockGrid', () => {
  test('walking K-quant columns under fixed qparams reproduces ggml’s reference bytes exactly', () => {
    const [rows, cols] = [8, 512];
    const w = weight(rows, cols, 1);
    for (const name of ['Q4_K', 'Q6_K'] as const) {
      const grid = new GgufBlockGrid(BLOCK_FORMATS[name], rows, cols);
      const dq = walk(grid, w);
      const ref = encodeTensor(GGML_TYPES[name], w, rows, cols);
      expect(grid.pack()).toEqual(ref);
      expect(dq).toEqual(decodeTensor(GGML_TYPES[name], ref, rows, cols));
    }
  });

  test('with an importance per column, the walk reproduces ggml’s importance-weighted K-quant bytes exactly', () => {
    const [rows, cols] = [4, 256];
    const w = weight(rows, cols, 4);
    const rand = seededRandom(9);
    const importance = Float32Array.from({ length: cols }, () => rand() * rand() * 4);
    for (const name of ['Q4_K', 'Q6_K'] as const) {
      const grid = new GgufBlockGrid(BLOCK_FORMATS[name], rows, cols, importance);
      walk(grid, w);
      expect(grid.pack()).toEqual(encodeTensor(GGML_TYPES[name], w, rows, cols, importance));
      expect(grid.pack()).not.toEqual(encodeTensor(GGML_TYPES[name], w, rows, cols));
    }
  });

  test('for 32-weight types the stored-scale codes differ from ggml’s float32-scale codes only at a few near-ties', () => {
    const [rows, cols] = [16, 256];
    const w = weight(rows, cols, 2);
    for (const name of ['Q8_0', 'Q4_0', 'Q4_1', 'Q5_0'] as const) {
      const grid = new GgufBlockGrid(BLOCK_FORMATS[name], rows, cols);
      const dq = walk(grid, w);
      const ref = decodeTensor(GGML_TYPES[name], encodeTensor(GGML_TYPES[name], w, rows, cols), rows, cols);
      const differ = dq.filter((v, i) => v !== ref[i]).length;
      expect(differ / dq.length, name).toBeLessThan(0.02);
      // and the dequantized values the walk returns are what the packed bytes decode to
      expect(decodeTensor(GGML_TYPES[name], grid.pack(), rows, cols)).toEqual(dq);
    }
  });

  test('qparams can be given, and a column of an unfixed block is refused', () => {
    const grid = new GgufBlockGrid(BLOCK_FORMATS.Q4_0, 2, 64);
    expect(() => grid.quantizeColumn(0, [0, 0])).toThrow(/call fixBlock\(0\) first/);
    const qp = { d: 0x3c00, m: 0, scales: new Int8Array(0), mins: new Int8Array(0) }; // d = 1
    grid.fixBlock(0, undefined, [qp, qp]);
    expect(Array.from(grid.quantizeColumn(0, [2.2, -9]))).toEqual([2, -8]);
    expect(Array.from(grid.codes.subarray(0, 1))).toEqual([10]);
    expect(() => grid.pack()).toThrow(/never fixed/);
  });
});
