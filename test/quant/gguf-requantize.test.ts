// Requantizing integer compressed-tensors results to GGUF blocks (quant/gguf-requantize.ts): at the source's
// own scales stored as float16 the fake-quantized values survive up to that rounding, every block is at least
// as close as ggml's reference quantizer, and a block spanning several source groups falls back to ggml's.

import { describe, expect, test } from 'vitest';
import { quantizeWeightRtn } from '../../src/algo/fake-quant.js';
import { requantizeToGguf } from '../../src/quant/gguf-requantize.js';
import { requantizeTarget } from '../../src/quant/gguf-scheme.js';
import { quantizeGgufRtn } from '../../src/quant/gguf-weight.js';
import { resolveQuantArgs } from '../../src/quant/scheme.js';
import { random } from '../fixtures/random.js';

const blockErrors = (a: Float32Array, b: Float32Array): number[] => {
  const out: number[] = [];
  for (let o = 0; o < a.length; o += 32) {
    let e = 0;
    for (let i = o; i < o + 32; i++) e += ((a[i] as number) - (b[i] as number)) ** 2;
    out.push(e);
  }
  return out;
};

describe('requantizing integer schemes to GGUF blocks', () => {
  test('targets: int ≤ 4 bits → Q4_0 (symmetric) / Q4_1, 5–8 bits → Q8_0, float and wider → none', () => {
    expect(requantizeTarget({ type: 'int', num_bits: 4, symmetric: true })).toBe('Q4_0');
    expect(requantizeTarget({ type: 'int', num_bits: 4, symmetric: false })).toBe('Q4_1');
    expect(requantizeTarget({ type: 'int', num_bits: 8, symmetric: true })).toBe('Q8_0');
    expect(requantizeTarget({ type: 'int', num_bits: 8, symmetric: false })).toBe('Q8_0');
    expect(requantizeTarget({ type: 'float', num_bits: 8, symmetric: true })).toBeUndefined();
  });

  const cases = [
    { name: 'W4A16 (int4 symmetric, group 128)', args: { num_bits: 4, symmetric: true, group_size: 128 }, type: 'Q4_0' as const },
    { name: 'W4A16_ASYM (int4, group 128)', args: { num_bits: 4, symmetric: false, group_size: 128 }, type: 'Q4_1' as const },
    { name: 'W8A16 (int8 symmetric, channel)', args: { num_bits: 8, symmetric: true, group_size: -1 }, type: 'Q8_0' as const },
    { name: 'int4 symmetric, group 16 (blocks span two groups)', args: { num_bits: 4, symmetric: true, group_size: 16 }, type: 'Q4_0' as const, spans: true },
  ];
  for (const c of cases) {
    test(`${c.name} → ${c.type}: every block at least as close as ggml's quantizer${c.spans ? '' : ', values kept up to the float16 scale'}`, async () => {
      const [rows, cols] = [16, 256];
      const w = random(rows * cols, 9, 0.05);
      const args = resolveQuantArgs(c.args);
      const fq = await quantizeWeightRtn(w, rows, cols, args);
      const r = requantizeToGguf(c.type, fq.dequantized, rows, cols, { args, scale: fq.scale, zeroPoint: fq.zeroPoint });
      const ggml = quantizeGgufRtn(c.type, fq.dequantized, rows, cols);
      const ours = blockErrors(fq.dequantized, r.dequantized);
      const theirs = blockErrors(fq.dequantized, ggml.dequantized);
      ours.forEach((e, k) => expect(e).toBeLessThanOrEqual(theirs[k] as number));
      if (c.spans) {
        expect(r.dequantized).toEqual(ggml.dequantized);
        return;
      }
      // the source grid survives: each value moves by at most its code times the float16 rounding of its scale
      expect(ours.reduce((a, b) => a + b, 0)).toBeLessThan(theirs.reduce((a, b) => a + b, 0) / 4);
      for (let i = 0; i < w.length; i++) {
        const v = fq.dequantized[i] as number;
        expect(Math.abs((r.dequantized[i] as number) - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11 + (c.type === 'Q4_1' ? 1e-4 : 0));
      }
    });
  }

  test('actorder: a block whose columns belong to different groups (g_idx) takes ggml\'s rounding', async () => {
    const [rows, cols] = [4, 64];
    const w = random(rows * cols, 3, 0.1);
    const args = resolveQuantArgs({ num_bits: 4, symmetric: true, group_size: 32 });
    const fq = await quantizeWeightRtn(w, rows, cols, args);
    const gIdx = Int32Array.from({ length: cols }, (_, c) => (c < 32 ? 0 : c % 2)); // block 0 one group, block 1 two
    const r = requantizeToGguf('Q4_0', fq.dequantized, rows, cols, { args, scale: fq.scale, gIdx });
    const ggml = quantizeGgufRtn('Q4_0', fq.dequantized, rows, cols);
    for (let row = 0; row < rows; row++) {
      const second = (a: Float32Array): number[] => Array.from(a.subarray(row * cols + 32, row * cols + 64));
      expect(second(r.dequantized)).toEqual(second(ggml.dequantized));
    }
  });
});
