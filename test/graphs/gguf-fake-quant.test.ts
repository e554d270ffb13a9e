// The GGUF block fake-quant graph (graphs/gguf-fake-quant.ts) against the JS block quantizers: AWQ's candidate
// weights with a GGUF scheme must be, bit for bit, Q(W·s)/s with Q = ggml's reference quantizer then
// llama.cpp's dequantization (quant/gguf-weight.ts quantizeGgufRtn, itself checked against ggml's bytes).

import { afterAll, describe, expect, test } from 'vitest';
import { candidateWeights } from '../../src/graphs/awq-kernel.js';
import { GRAPH_BLOCK_TYPES } from '../../src/graphs/gguf-fake-quant.js';
import { GGUF_ARGS } from '../../src/quant/gguf-scheme.js';
import { quantizeGgufRtn } from '../../src/quant/gguf-weight.js';
import { resolveQuantArgs } from '../../src/quant/scheme.js';
import { Runtime } from '../../src/ort/session.js';
import { random } from '../fixtures/random.js';

const rt = new Runtime({ device: 'cpu', threads: 2 });
afterAll(() => rt.close());

/** rows of 64 (two blocks each) that hit the rules' corners: exact ties of every rounding, zeros, float16 subnormal and large scales */
function edgeRows(): Float32Array {
  const rows: number[][] = [];
  rows.push(Array.from({ length: 64 }, (_, j) => j - 32)); // integers: Q4_0 / Q8_0 ties
  rows.push(Array.from({ length: 64 }, (_, j) => (j % 32 === 0 ? 127 : (j - 32) + 0.5))); // Q8_0: d = 1, ±k.5 ties
  rows.push(Array.from({ length: 64 }, (_, j) => (j % 32 === 0 ? -8 : ((j % 16) - 8) + 0.5))); // Q4_0: d = 1, half ties
  rows.push(new Array<number>(64).fill(0)); // all zeros: 1/d := 0
  rows.push(Array.from({ length: 64 }, (_, j) => (j % 3) * 1e-6 - 1e-6)); // float16 subnormal scales
  rows.push(Array.from({ length: 64 }, (_, j) => Math.sin(j) * 3e4)); // large values, float16 still finite
  rows.push(Array.from({ length: 64 }, (_, j) => (j < 32 ? 5 : -5))); // constant blocks (Q4_1: d = 0)
  rows.push(Array.from({ length: 64 }, (_, j) => (j % 2 === 0 ? 3 : -3))); // |x| ties: ArgMax keeps the first
  return Float32Array.from(rows.flat());
}

/** candidate k of a [cols, K, rows] block as a [rows, cols] weight */
function candidate(block: Float32Array, rows: number, cols: number, K: number, k: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let c = 0; c < cols; c++) for (let r = 0; r < rows; r++) out[r * cols + c] = block[(c * K + k) * rows + r] as number;
  return out;
}

const f = Math.fround;

describe('GGUF block fake quantization in onnxruntime', () => {
  for (const type of GRAPH_BLOCK_TYPES) {
    test(`${type}: Q(W·s)/s equals quantizeGgufRtn's dequantized values bit for bit (random, ties, zeros, tiny, large)`, async () => {
      const cols = 64;
      const w = Float32Array.from([...edgeRows(), ...random(40 * cols, 3, 2), ...random(8 * cols, 5, 1e-3)]);
      const rows = w.length / cols;
      const K = 3;
      // candidate 0 is the identity: the graph alone against the JS quantizer
      const scales = Float32Array.from({ length: K * cols }, (_, i) => (i < cols ? 1 : f(1 + 0.9 * (random(1, i + 17)[0] as number))));
      const args = resolveQuantArgs({ ...GGUF_ARGS[type] });
      const block = await candidateWeights(rt, w, rows, cols, scales, K, args);
      let compared = 0;
      for (let k = 0; k < K; k++) {
        const s = scales.subarray(k * cols, (k + 1) * cols);
        const ws = Float32Array.from(w, (v, i) => f(v * (s[i % cols] as number)));
        const q = quantizeGgufRtn(type, ws, rows, cols).dequantized;
        const want = Array.from(q, (v, i) => f(v / (s[i % cols] as number)) + 0);
        expect(Array.from(candidate(block, rows, cols, K, k), (v) => v + 0)).toEqual(want);
        compared += want.length;
      }
      expect(compared).toBe(K * rows * cols);
    });
  }

  test('a K-quant or a partial block has no block graph', async () => {
    const w = random(2 * 256, 1);
    await expect(candidateWeights(rt, w, 2, 256, new Float32Array(256).fill(1), 1, resolveQuantArgs({ ...GGUF_ARGS.Q4_K }))).rejects.toThrow(/no block graph/);
    await expect(candidateWeights(rt, w.subarray(0, 2 * 48), 2, 48, new Float32Array(48).fill(1), 1, resolveQuantArgs({ ...GGUF_ARGS.Q4_0 }))).rejects.toThrow(/no block graph/);
  });
});
