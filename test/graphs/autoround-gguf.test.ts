// AutoRound's learnable GGUF block quantizer (graphs/autoround-gguf.ts) against its JS twin
// (algo/autoround-gguf.ts): at random offsets V and min/max factors, the graph's fake-quantized weight is,
// bit for bit, what the packed blocks (codes + float16 qparams) dequantize to; and at V = 0, factors 1, the
// blocks keep ggml's qparams (only the code rounding rule differs from ggml's reference quantizer).

import { afterAll, describe, expect, test } from 'vitest';
import { quantizeLearnedGguf, type LearnedBlockType } from '../../src/algo/autoround-gguf.js';
import { initialParams } from '../../src/algo/autoround.js';
import { quantLayout } from '../../src/algo/autoround-layout.js';
import { ggufLearnedBlocks } from '../../src/graphs/autoround-gguf.js';
import { Graph } from '../../src/ort/graph.js';
import { Runtime } from '../../src/ort/session.js';
import { weightMinMax } from '../../src/quant/qparams.js';
import { BLOCK_FORMATS, decodeTensor } from '../../src/quant/gguf-quantize.js';
import { decodeQParams, packGgufWeight, quantizeGgufRtn } from '../../src/quant/gguf-weight.js';
import { GGML_TYPES } from '../../src/quant/gguf-types.js';
import type { Tensor } from '../../src/tensor.js';
import { random } from '../fixtures/random.js';

const rt = new Runtime({ device: 'cpu', threads: 2 });
afterAll(() => rt.close());

const plus0 = (x: number): number => x + 0;
const TYPES: LearnedBlockType[] = ['Q8_0', 'Q4_0', 'Q5_0', 'Q4_1'];
const [ROWS, COLS] = [24, 64];

/** rows with exact ties, zeros, constant and one-signed blocks, float16-subnormal scales, then random rows */
function weight(): Float32Array {
  const edge: number[][] = [
    Array.from({ length: COLS }, (_, j) => j - 32),
    new Array<number>(COLS).fill(0),
    Array.from({ length: COLS }, (_, j) => (j < 32 ? 5 : -5)),
    Array.from({ length: COLS }, (_, j) => (j % 2 === 0 ? 3 : -3)),
    Array.from({ length: COLS }, (_, j) => (j % 3) * 1e-6 - 1e-6),
    Array.from({ length: COLS }, (_, j) => 1 + (j % 7)),
  ];
  return Float32Array.from([...edge.flat(), ...random((ROWS - edge.length) * COLS, 7, 2)]);
}

async function graphWeight(type: LearnedBlockType, w: Float32Array, min: Float32Array, max: Float32Array, v: Float32Array, a: Float32Array, b: Float32Array): Promise<Float32Array> {
  const G = COLS / 32;
  const kernel = await rt.kernel(`test.autoround-gguf:${type}`, () => {
    const g = new Graph('autoround_gguf');
    const wv = g.input('w', 'float32', [ROWS, G, 32]);
    const vv = g.input('v', 'float32', [ROWS, G, 32]);
    const lo = g.mul(g.input('min', 'float32', [ROWS, G]), g.input('a', 'float32', [ROWS, G]));
    const hi = g.mul(g.input('max', 'float32', [ROWS, G]), g.input('b', 'float32', [ROWS, G]));
    g.output(g.reshape(ggufLearnedBlocks(g, type, wv, vv, lo, hi, (x) => g.roundHalfEven(x)), [ROWS, COLS]), 'y', [ROWS, COLS]);
    return g;
  });
  const t = (dims: number[], data: Float32Array): Tensor => ({ dtype: 'float32', dims, data });
  const out = await kernel.run({ w: t([ROWS, G, 32], w), v: t([ROWS, G, 32], v), min: t([ROWS, G], min), max: t([ROWS, G], max), a: t([ROWS, G], a), b: t([ROWS, G], b) });
  return out['y']!.data as Float32Array;
}

describe('AutoRound GGUF block quantizer', () => {
  for (const type of TYPES) {
    test(`${type}: graph fake quant == JS blocks, packed and decoded, at random V and factors`, async () => {
      const w = weight();
      const layout = quantLayout(ROWS, COLS, 'group', 32);
      const range = weightMinMax(w, ROWS, COLS, { strategy: 'group', group_size: 32 } as never);
      const p = initialParams(layout);
      random(p.v.length, 11, 0.5).forEach((x, i) => (p.v[i] = x));
      p.minScale.forEach((_, i) => (p.minScale[i] = Math.fround(0.6 + 0.4 * Math.abs(random(1, i + 3)[0] as number))));
      p.maxScale.forEach((_, i) => (p.maxScale[i] = Math.fround(0.6 + 0.4 * Math.abs(random(1, i + 99)[0] as number))));
      p.maxScale[0] = 1; // keep one block at its full range
      const q = quantizeLearnedGguf(type, w, layout, range, p);
      const y = await graphWeight(type, w, range.min, range.max, p.v, p.minScale, p.maxScale);
      // equal values, up to the sign of zero: code 0 times a negative d is −0, and round(−0.3) is −0 in the graph
      expect(Array.from(q.dequantized, plus0)).toEqual(Array.from(y, plus0));
      const [lo, hi] = BLOCK_FORMATS[type].codeRange;
      expect(q.codes.every((c) => c >= lo && c <= hi)).toBe(true);
      // the bytes the gguf output writes decode (dequantize_row_<type>) to the same weight
      const bytes = packGgufWeight(type, q.codes, q.qparams, ROWS, COLS);
      expect(Array.from(decodeTensor(GGML_TYPES[type], bytes, ROWS, COLS), plus0)).toEqual(Array.from(y, plus0));
    });

    test(`${type}: at V = 0 and factors 1 the blocks store ggml's own qparams`, () => {
      const w = random(ROWS * COLS, 5, 3);
      const layout = quantLayout(ROWS, COLS, 'group', 32);
      const range = weightMinMax(w, ROWS, COLS, { strategy: 'group', group_size: 32 } as never);
      const q = quantizeLearnedGguf(type, w, layout, range, initialParams(layout));
      const rtn = quantizeGgufRtn(type, w, ROWS, COLS);
      expect(decodeQParams(type, q.qparams)).toEqual(decodeQParams(type, rtn.qparams));
      // codes differ from ggml's only where its rounding rule and float32 1/d disagree with round(x / f16(d))
      let differ = 0;
      q.codes.forEach((c, i) => (differ += c !== rtn.codes[i] ? 1 : 0));
      expect(differ).toBeLessThan(q.codes.length * 0.05);
    });
  }
});
