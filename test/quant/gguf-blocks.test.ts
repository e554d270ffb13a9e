import { describe, expect, test } from 'vitest';
import { roundHalfEven } from '../../src/quant/round.js';
import { nearestInt, roundAway, truncOffset } from '../../src/quant/ggml-rounding.js';
import { dequantizeBlock, quantizeWith } from '../../src/quant/gguf-block.js';
import { Q4_0, Q4_1, Q5_0, Q8_0 } from '../../src/quant/gguf-blocks.js';
import { BLOCK_FORMATS, decodeTensor, encodeTensor, packBlocks } from '../../src/quant/gguf-quantize.js';
import { GGML_TYPES, bitsPerWeight, rowBytes } from '../../src/quant/gguf-types.js';
import { seededRandom } from '../../src/random.js';
import { ggmlGolden } from './ggml-golden.js';

const block = (values: Record<number, number>, fill = 0): Float32Array => {
  const x = new Float32Array(32).fill(fill);
  for (const [i, v] of Object.entries(values)) x[Number(i)] = v;
  return x;
};
const hex = (b: Uint8Array, from: number, to: number) => Buffer.from(b.subarray(from, to)).toString('hex');

describe('ggml roundings', () => {
  test('nearest_int rounds half to even, as the project rule does', () => {
    expect([0.5, 1.5, 2.5, -2.5, -3.5, 2.4999998].map(nearestInt)).toEqual([0, 2, 2, -2, -4, 2]);
    const rand = seededRandom(1);
    for (let i = 0; i < 2000; i++) {
      const x = Math.fround((rand() - 0.5) * 2 ** (1 + Math.floor(rand() * 22)));
      expect(nearestInt(x)).toBe(roundHalfEven(x) + 0);
    }
  });

  test('nearest_int outside ±2^22 returns what ggml’s bit trick returns, not the nearest integer', () => {
    // 5e6 + 1.5·2^23 = 17582912 has mantissa bits 0x0C4B40 · … ; ggml reads them as (bits & 0x7fffff) − 0x400000
    const bits = new DataView(new ArrayBuffer(4));
    bits.setFloat32(0, Math.fround(5e6 + 12582912), true);
    expect(nearestInt(5e6)).toBe((bits.getUint32(0, true) & 0x7fffff) - 0x400000);
    expect(nearestInt(5e6)).not.toBe(5e6);
  });

  test('roundf (Q8_0) rounds ties away from zero; the project rule would round them to even', () => {
    expect([2.5, -2.5, 0.5, 1.5].map(roundAway)).toEqual([3, -3, 1, 2]);
    expect([2.5, -2.5, 0.5].map((v) => roundHalfEven(v) + 0)).toEqual([2, -2, 0]);
  });

  test('trunc(v + 0.5f) (Q4_x codes) rounds ties up, and its float32 addition carries near-ties over', () => {
    expect(truncOffset(2.5, 0.5)).toBe(3);
    expect(truncOffset(3.5, 0.5)).toBe(4);
    expect(truncOffset(Math.fround(0.49999997), 0.5)).toBe(1);
    expect(Math.floor(Math.fround(0.49999997) + 0.5)).toBe(0);
  });
});

describe('Q8_0', () => {
  test('a block with amax 127 has d = 1 and its ties round away from zero', () => {
    const x = block({ 0: 127, 1: 2.5, 2: -2.5, 3: 0.5, 4: -0.5, 5: 1.5, 6: -126.4 });
    const b = Q8_0.quantize(x);
    expect(b.qparams.d).toBe(0x3c00);
    expect(Array.from(b.codes.subarray(0, 8))).toEqual([127, 3, -3, 1, -1, 2, -126, 0]);
    const bytes = new Uint8Array(34);
    Q8_0.pack(b, bytes, 0);
    expect(hex(bytes, 0, 9)).toBe('003c7f03fd01ff0282');
    expect(Q8_0.unpack(bytes, 0)).toEqual(b);
  });

  test('an all-zero block stores d = 0 and codes 0', () => {
    const b = Q8_0.quantize(new Float32Array(32));
    expect(b.qparams.d).toBe(0);
    expect(b.codes.every((c) => c === 0)).toBe(true);
  });
});

describe('Q4_0', () => {
  // worked example of src/quant/gguf-blocks.ts: x_j = j − 8
  const x = Float32Array.from({ length: 32 }, (_, j) => j - 8);

  test('d is the signed absolute maximum over −8 and codes are trunc(x/d + 8.5)', () => {
    const b = Q4_0.quantize(x);
    expect(b.qparams.d).toBe(0xc1c0); // −2.875 = 23 / −8
    expect(Array.from(b.codes)).toEqual([11, 10, 10, 10, 9, 9, 9, 8, 8, 8, 7, 7, 7, 6, 6, 6, 5, 5, 5, 4, 4, 3, 3, 3, 2, 2, 2, 1, 1, 1, 0, 0]);
    const bytes = new Uint8Array(18);
    Q4_0.pack(b, bytes, 0);
    expect(hex(bytes, 0, 4)).toBe('c0c15b5a'); // d | q0 11 | q16 5 << 4 | q1 10 | q17 5 << 4
    const out = new Float32Array(32);
    dequantizeBlock(Q4_0, Q4_0.unpack(bytes, 0), out);
    expect(out[0]).toBe(-8.625); // (11 − 8)·(−2.875)
    expect(out[31]).toBe(23); // (0 − 8)·(−2.875)
  });

  test('the first value of largest magnitude sets the sign of d', () => {
    expect(Q4_0.quantize(block({ 3: -4, 9: 4 })).qparams.d).toBe(0x3800); // −4 / −8 = 0.5
    expect(Q4_0.quantize(block({ 3: 4, 9: -4 })).qparams.d).toBe(0xb800); // −0.5
  });
});

describe('Q4_1', () => {
  test('x_j = j/2: d = 15.5/15, m = 0, codes round half up', () => {
    const x = Float32Array.from({ length: 32 }, (_, j) => j / 2);
    const b = Q4_1.quantize(x);
    expect(b.qparams.d).toBe(0x3c22); // 1.0333… → float16 1.033203125
    expect(b.qparams.m).toBe(0);
    expect([0, 1, 2, 3, 4, 30, 31].map((j) => b.codes[j])).toEqual([0, 0, 1, 1, 2, 15, 15]);
  });

  test('the range is [min, max] without 0: an all-positive block keeps its minimum as m', () => {
    const b = Q4_1.quantize(Float32Array.from({ length: 32 }, (_, j) => 1 + j));
    expect(b.qparams.m).toBe(0x3c00); // 1.0
    expect(b.qparams.d).toBe(0x4022); // 31 / 15 = 2.0667 → float16 2.06640625
  });
});

describe('Q5_0', () => {
  test('the fifth bits of the codes go to qh, bit j for weight j', () => {
    const x = Float32Array.from({ length: 32 }, (_, j) => j - 16);
    const b = Q5_0.quantize(x);
    const bytes = new Uint8Array(22);
    Q5_0.pack(b, bytes, 0);
    const qh = bytes[2]! | (bytes[3]! << 8) | (bytes[4]! << 16) | (bytes[5]! << 24);
    for (let j = 0; j < 32; j++) expect((qh >>> j) & 1).toBe((b.codes[j]! >>> 4) & 1);
    expect(Q5_0.unpack(bytes, 0)).toEqual(b);
  });
});

describe('block arithmetic', () => {
  test('bytes per block and bits per weight are ggml-common.h’s', () => {
    const table = Object.values(GGML_TYPES).map((t) => [t.name, t.blockSize, t.typeSize, bitsPerWeight(t)]);
    expect(table).toEqual([
      ['F32', 1, 4, 32],
      ['F16', 1, 2, 16],
      ['BF16', 1, 2, 16],
      ['Q8_0', 32, 34, 8.5],
      ['Q4_0', 32, 18, 4.5],
      ['Q4_1', 32, 20, 5],
      ['Q5_0', 32, 22, 5.5],
      ['Q4_K', 256, 144, 4.5],
      ['Q6_K', 256, 210, 6.5625],
    ]);
  });

  test('a row that is not a whole number of blocks is refused', () => {
    expect(() => rowBytes(GGML_TYPES.Q4_0, 172)).toThrow(/172 values is not a whole number of Q4_0 blocks of 32/);
    expect(() => rowBytes(GGML_TYPES.Q4_K, 288)).toThrow(/Q4_K blocks of 256/);
    expect(rowBytes(GGML_TYPES.Q4_K, 768)).toBe(3 * 144);
  });
});

describe('bit-exact with ggml’s quantizers', () => {
  const golden = ggmlGolden();
  for (const name of Object.keys(BLOCK_FORMATS) as (keyof typeof BLOCK_FORMATS)[]) {
    test(`${name}: bytes and dequantized values equal ggml’s on ${golden.rows.length} rows of 256`, () => {
      const type = GGML_TYPES[name];
      for (const row of golden.rows) {
        const bytes = encodeTensor(type, row.x, 1, 256);
        expect(hex(bytes, 0, bytes.length), `${name} ${row.name}`).toBe(hex(row.blocks[name], 0, row.blocks[name].length));
        expect(Array.from(decodeTensor(type, bytes, 1, 256)), `${name} ${row.name}`).toEqual(Array.from(row.dequantized[name]));
      }
    });

    test(`${name} with an importance matrix: bytes equal ggml’s quantize_row_${name.toLowerCase()}_impl`, () => {
      for (const row of golden.rows) {
        const bytes = encodeTensor(GGML_TYPES[name], row.x, 1, 256, golden.importance);
        expect(hex(bytes, 0, bytes.length), `${name} ${row.name}`).toBe(hex(row.blocksWithImportance[name], 0, bytes.length));
      }
    });
  }

  test('an importance matrix changes what most types store (Q8_0 ignores it, as ggml does)', () => {
    const row = golden.rows.find((r) => r.name === 'stories260K q_proj.0')!;
    for (const name of Object.keys(BLOCK_FORMATS) as (keyof typeof BLOCK_FORMATS)[]) {
      const same = hex(row.blocks[name], 0, row.blocks[name].length) === hex(row.blocksWithImportance[name], 0, row.blocks[name].length);
      expect(same, name).toBe(name === 'Q8_0');
    }
  });
});

describe('codes under given qparams', () => {
  test('re-quantizing a dequantized block with its own qparams returns its codes', () => {
    const rand = seededRandom(7);
    for (const format of Object.values(BLOCK_FORMATS)) {
      const x = Float32Array.from({ length: format.type.blockSize }, () => rand() * 2 - 1);
      const b = format.quantize(x);
      const dq = new Float32Array(x.length);
      dequantizeBlock(format, b, dq);
      expect(Array.from(quantizeWith(format, b.qparams, dq).codes), format.type.name).toEqual(Array.from(b.codes));
    }
  });

  test('values beyond the block’s range clamp to the end codes', () => {
    const b = Q4_0.quantize(Float32Array.from({ length: 32 }, (_, j) => j - 8));
    expect(Q4_0.code(b.qparams, 0, 1000)).toBe(0);
    expect(Q4_0.code(b.qparams, 0, -1000)).toBe(15);
    expect(Q8_0.code(Q8_0.quantize(block({ 0: 1 })).qparams, 0, -5)).toBe(-128);
  });

  test('packBlocks of a method’s blocks writes what encodeTensor writes for the same codes', () => {
    const rand = seededRandom(3);
    const w = Float32Array.from({ length: 4 * 64 }, () => rand() - 0.5);
    const blocks = Array.from({ length: 8 }, (_, i) => Q4_1.quantize(w, i * 32));
    expect(packBlocks(Q4_1, blocks, 4, 64)).toEqual(encodeTensor(GGML_TYPES.Q4_1, w, 4, 64));
    expect(() => packBlocks(Q4_1, blocks, 4, 32)).toThrow(/needs 128/);
  });
});
