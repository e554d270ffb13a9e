import { afterAll, describe, expect, test } from 'vitest';
import { gptqQuantizeGguf } from '../../src/algo/gptq-gguf.js';
import { GgufBlockGrid } from '../../src/quant/gguf-grid.js';
import { BLOCK_FORMATS, decodeTensor, encodeTensor, type GgufBlockTypeName } from '../../src/quant/gguf-quantize.js';
import { GGML_TYPES } from '../../src/quant/gguf-types.js';
import { encodeQParams, packGgufWeight, quantizeGgufRtn } from '../../src/quant/gguf-weight.js';
import { presetScheme } from '../../src/quant/scheme.js';
import { Runtime } from '../../src/ort/session.js';

const f = Math.fround;

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}
const gauss = (rnd: () => number): number => rnd() + rnd() + rnd() + rnd() - 2;

/** H = 2XᵀX/m for X [m, n] with correlated, unevenly scaled columns */
function hessianOf(m: number, n: number, seed: number): Float64Array {
  const rnd = lcg(seed);
  const x = new Float64Array(m * n);
  for (let t = 0; t < m; t++) {
    const common = gauss(rnd);
    for (let j = 0; j < n; j++) x[t * n + j] = (gauss(rnd) + 0.7 * common) * (1 + (j % 7) / 2);
  }
  const h = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let t = 0; t < m; t++) s += (x[t * n + i] as number) * (x[t * n + j] as number);
    h[i * n + j] = (2 * s) / m;
  }
  return h;
}

const randomWeight = (rows: number, cols: number, seed: number): Float32Array => {
  const rnd = lcg(seed);
  return Float32Array.from({ length: rows * cols }, () => f(gauss(rnd) * 0.05));
};

/** Σ_r (w − q)_r H (w − q)_rᵀ: the output error GPTQ minimises */
function outputError(w: Float32Array, q: Float32Array, h: Float64Array, rows: number, n: number): number {
  let sum = 0;
  for (let r = 0; r < rows; r++) for (let i = 0; i < n; i++) {
    const di = (w[r * n + i] as number) - (q[r * n + i] as number);
    for (let j = 0; j < n; j++) sum += di * (h[i * n + j] as number) * ((w[r * n + j] as number) - (q[r * n + j] as number));
  }
  return sum;
}

const rt = new Runtime({ device: 'cpu' });
afterAll(() => rt.close());

const TYPES: GgufBlockTypeName[] = ['Q8_0', 'Q4_0', 'Q4_1', 'Q4_K', 'Q6_K'];
const argsOf = (t: GgufBlockTypeName) => presetScheme(`GGUF_${t}`, ['Linear']).weights!;

describe('gptqQuantizeGguf', () => {
  for (const type of TYPES) {
    const cols = GGML_TYPES[type].blockSize === 256 ? 512 : 96;
    const rows = 6;

    test(`${type}: a diagonal Hessian gives the blocks' own round to nearest under their stored qparams (reference, and imatrix = diag H)`, async () => {
      const w = randomWeight(rows, cols, 3);
      const h = new Float64Array(cols * cols);
      for (let i = 0; i < cols; i++) h[i * cols + i] = 1 + (i % 5);
      const diag = Float32Array.from({ length: cols }, (_, i) => 1 + (i % 5));
      for (const importance of [false, true]) {
        const r = await gptqQuantizeGguf(w, rows, cols, h, type, argsOf(type), { runtime: rt, blockSize: 128, dampeningFrac: 0.01, actorder: null, importance });
        const grid = new GgufBlockGrid(BLOCK_FORMATS[type], rows, cols, importance ? diag : undefined);
        for (let c = 0; c < cols; c++) {
          if (c % grid.blockSize === 0) grid.fixBlock(c / grid.blockSize, w);
          grid.quantizeColumn(c, Array.from({ length: rows }, (_, k) => w[k * cols + c] as number));
        }
        expect(r.weight.codes, `importance ${importance}`).toEqual(grid.codes);
        expect(r.weight.qparams, `importance ${importance}`).toEqual(encodeQParams(type, grid.toBlocks().map((b) => b.qparams)));
        // K-quants compute their codes from the stored scales, so the reference path is ggml's own rtn, byte for byte
        if (!importance && (type === 'Q4_K' || type === 'Q6_K')) expect(packGgufWeight(type, r.weight.codes, r.weight.qparams, rows, cols)).toEqual(encodeTensor(GGML_TYPES[type], w, rows, cols));
      }
    });

    test(`${type}: results do not depend on the column-pass block sizes (blocks are fixed on up-to-date weights)`, async () => {
      const w = randomWeight(rows, cols, 5);
      const h = hessianOf(cols + 16, cols, 7);
      const run = (blockSize: number, subBlock: number, superBlock?: number) =>
        gptqQuantizeGguf(w, rows, cols, h, type, argsOf(type), { runtime: rt, blockSize, subBlock, dampeningFrac: 0.01, actorder: null, precision: 'float64', ...(superBlock ? { superBlock } : {}) });
      const base = await run(128, 8);
      for (const [bs, sub, sup] of [[32, 1], [100, 8, 300], [7, 3], [256, 32]] as const) {
        expect((await run(bs, sub, sup)).weight.codes, `block ${bs} sub ${sub}`).toEqual(base.weight.codes);
      }
    });

    test(`${type}: the output error is below ggml's round to nearest on correlated inputs, and the packed bytes decode to GPTQ's values`, async () => {
      const w = randomWeight(rows, cols, 11);
      const h = hessianOf(cols + 16, cols, 13);
      const r = await gptqQuantizeGguf(w, rows, cols, h, type, argsOf(type), { runtime: rt, blockSize: 128, dampeningFrac: 0.01, actorder: null });
      const rtn = quantizeGgufRtn(type, w, rows, cols);
      expect(outputError(w, r.weight.dequantized, h, rows, cols)).toBeLessThan(0.9 * outputError(w, rtn.dequantized, h, rows, cols));
      const bytes = packGgufWeight(type, r.weight.codes, r.weight.qparams, rows, cols);
      expect(decodeTensor(GGML_TYPES[type], bytes, rows, cols)).toEqual(r.weight.dequantized);
      // unpacking the bytes gives back GPTQ's codes: nothing was rounded a second time
      const format = BLOCK_FORMATS[type];
      const size = GGML_TYPES[type].blockSize;
      const unpacked = new Int8Array(rows * cols);
      for (let k = 0; k < (rows * cols) / size; k++) unpacked.set(format.unpack(bytes, k * GGML_TYPES[type].typeSize).codes, k * size);
      expect(unpacked).toEqual(r.weight.codes);
    });
  }

  test("rtn's bytes are ggml's reference quantizer's (llama-quantize without an imatrix)", () => {
    const w = randomWeight(4, 256, 17);
    for (const type of TYPES) {
      const q = quantizeGgufRtn(type, w, 4, 256);
      expect(packGgufWeight(type, q.codes, q.qparams, 4, 256), type).toEqual(encodeTensor(GGML_TYPES[type], w, 4, 256));
      expect(decodeTensor(GGML_TYPES[type], encodeTensor(GGML_TYPES[type], w, 4, 256), 4, 256)).toEqual(q.dequantized);
    }
  });
});
