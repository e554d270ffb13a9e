import { describe, expect, test } from 'vitest';
import { seededRandom } from '../../src/random.js';
import { dequantizeBlock, type GgufBlock } from '../../src/quant/gguf-block.js';
import { Q4_K, Q6_K } from '../../src/quant/gguf-k-quants.js';
import { fromHalf } from '../../src/quant/ggml-rounding.js';
import { ggmlGolden } from './ggml-golden.js';

const hex = (b: Uint8Array, from: number, to: number) => Buffer.from(b.subarray(from, to)).toString('hex');

function randomBlock(rand: () => number, kind: 'q4k' | 'q6k'): GgufBlock {
  const codes = Int8Array.from({ length: 256 }, () => Math.floor(rand() * (kind === 'q4k' ? 16 : 64)));
  const six = () => Int8Array.from({ length: 8 }, () => Math.floor(rand() * 64));
  return kind === 'q4k'
    ? { qparams: { d: 0x2a3b, m: 0x1c05, scales: six(), mins: six() }, codes }
    : { qparams: { d: 0x2a3b, m: 0, scales: Int8Array.from({ length: 16 }, () => Math.floor(rand() * 256) - 128), mins: new Int8Array(0) }, codes };
}

describe('Q4_K', () => {
  test('packs 6-bit sub-scales and sub-minimums into 12 bytes (worked example of gguf-k-quants.ts)', () => {
    const b: GgufBlock = { qparams: { d: 0x3c00, m: 0x3800, scales: Int8Array.of(1, 2, 3, 4, 5, 6, 7, 8), mins: Int8Array.of(40, 41, 42, 43, 44, 45, 46, 47) }, codes: new Int8Array(256) };
    const bytes = new Uint8Array(144);
    Q4_K.pack(b, bytes, 0);
    expect(hex(bytes, 0, 4)).toBe('003c0038');
    expect(hex(bytes, 4, 16)).toBe('01020304a8a9aaabc5d6e7f8');
    expect(Q4_K.unpack(bytes, 0)).toEqual(b);
  });

  test('a sub-scale of 63 puts its top two bits in the high bits of bytes 0..7', () => {
    const b: GgufBlock = { qparams: { d: 1, m: 1, scales: Int8Array.of(0, 0, 0, 0, 63, 0, 0, 0), mins: Int8Array.of(0, 0, 0, 0, 0, 0, 0, 48) }, codes: new Int8Array(256) };
    const bytes = new Uint8Array(144);
    Q4_K.pack(b, bytes, 0);
    expect(bytes[4]).toBe(3 << 6); // (63 >> 4) << 6 on byte 0
    expect(bytes[4 + 7]).toBe(3 << 6); // (48 >> 4) << 6 on byte 7 (min of sub-block 7)
    expect(bytes[4 + 8]).toBe(15); // low nibble of sub-scale 4
    expect(Q4_K.unpack(bytes, 0)).toEqual(b);
  });

  test('codes of sub-blocks 2c and 2c+1 share chunk c: low nibbles, then high nibbles', () => {
    const codes = Int8Array.from({ length: 256 }, (_, i) => (i >> 5) * 2 + (i & 1));
    const bytes = new Uint8Array(144);
    Q4_K.pack({ qparams: { d: 0, m: 0, scales: new Int8Array(8), mins: new Int8Array(8) }, codes }, bytes, 0);
    expect(bytes[16]).toBe(0 | (2 << 4)); // weight 0 (sub-block 0) and weight 32 (sub-block 1)
    expect(bytes[16 + 32 + 1]).toBe(5 | (7 << 4)); // weights 65 and 97
  });

  test('dequantizes (d·sc)·q − dmin·m per sub-block', () => {
    const b = randomBlock(seededRandom(1), 'q4k');
    const out = new Float32Array(256);
    dequantizeBlock(Q4_K, b, out);
    const i = 100;
    const s = i >> 5;
    const d = Math.fround(fromHalf(b.qparams.d) * b.qparams.scales[s]!);
    const m = Math.fround(fromHalf(b.qparams.m) * b.qparams.mins[s]!);
    expect(out[i]).toBe(Math.fround(Math.fround(d * b.codes[i]!) - m));
  });

  test('pack and unpack round-trip random blocks', () => {
    const rand = seededRandom(2);
    for (let k = 0; k < 20; k++) {
      const b = randomBlock(rand, 'q4k');
      const bytes = new Uint8Array(144);
      Q4_K.pack(b, bytes, 0);
      expect(Q4_K.unpack(bytes, 0)).toEqual(b);
    }
  });
});

describe('Q6_K', () => {
  test('splits each 6-bit code into a low nibble (ql) and two high bits (qh)', () => {
    const codes = new Int8Array(256).fill(32);
    codes[0] = 0b101011; // ql[0] low 0xB, qh[0] bits 0-1 = 0b10
    codes[32] = 63; // ql[32] low 0xF, qh[0] bits 2-3 = 0b11
    codes[64] = 0b010101; // ql[0] high 0x5, qh[0] bits 4-5 = 0b01
    codes[96] = 0; // ql[32] high 0, qh[0] bits 6-7 = 0
    const b: GgufBlock = { qparams: { d: 0x3c00, m: 0, scales: Int8Array.from({ length: 16 }, (_, s) => s - 8), mins: new Int8Array(0) }, codes };
    const bytes = new Uint8Array(210);
    Q6_K.pack(b, bytes, 0);
    expect(bytes[0]).toBe(0x5b);
    expect(bytes[32]).toBe(0x0f);
    expect(bytes[128]).toBe(0b00011110);
    expect(bytes[192]).toBe(0xf8); // scale −8 as int8
    expect(hex(bytes, 208, 210)).toBe('003c');
    expect(Q6_K.unpack(bytes, 0)).toEqual(b);
  });

  test('an all-zero super-block is 210 zero bytes', () => {
    const b = Q6_K.quantize(new Float32Array(256));
    const bytes = new Uint8Array(210).fill(7);
    Q6_K.pack(b, bytes, 0);
    expect(bytes.every((v) => v === 0)).toBe(true);
  });

  test('pack and unpack round-trip random blocks', () => {
    const rand = seededRandom(3);
    for (let k = 0; k < 20; k++) {
      const b = randomBlock(rand, 'q6k');
      const bytes = new Uint8Array(210);
      Q6_K.pack(b, bytes, 0);
      expect(Q6_K.unpack(bytes, 0)).toEqual(b);
    }
  });
});

describe('K-quant codes under their stored qparams', () => {
  test('equal the reference quantizer’s codes on real weights (ggml computes them from the stored scales too)', () => {
    for (const row of ggmlGolden().rows.filter((r) => r.name.startsWith('stories260K'))) {
      for (const format of [Q4_K, Q6_K]) {
        const ref = format.unpack(row.blocks[format.type.name as 'Q4_K' | 'Q6_K'], 0);
        const ours = Array.from({ length: 256 }, (_, i) => format.code(ref.qparams, i, row.x[i]!));
        expect(ours, `${format.type.name} ${row.name}`).toEqual(Array.from(ref.codes));
        expect(format.qparams(row.x)).toEqual(ref.qparams);
      }
    }
  });
});
