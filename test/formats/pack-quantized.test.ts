import { describe, expect, test } from 'vitest';
import {
  PackError,
  packMatMulNBits,
  packMatMulNBitsZeroPoints,
  packToInt32,
  packZeroPoints,
  packedWidth,
  unpackFromInt32,
  unpackZeroPoints,
} from '../../src/formats/pack-quantized.js';
import { computeQParams, dequantizeWeight, qparamShape, quantizeWeight, weightMinMax } from '../../src/quant/qparams.js';
import { presetScheme } from '../../src/quant/scheme.js';

function randomCodes(n: number, bits: number, seed: number): Int8Array {
  let s = seed;
  const out = new Int8Array(n);
  const span = 2 ** bits;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out[i] = (s >>> 8) % span - span / 2;
  }
  return out;
}

describe('packToInt32', () => {
  test('packs the DESIGN test vector to −2001667991 (0x88B0F869)', () => {
    const packed = packToInt32(Int8Array.of(1, -2, 0, 7, -8, 3, 0, 0), 1, 8, 4);
    expect(Array.from(packed)).toEqual([-2001667991]);
    expect(packed[0]! >>> 0).toBe(0x88b0f869);
  });

  test('8-bit values shift by 128 and pad with zero bits (compressed-tensors docstring: [1, 2] → 33409)', () => {
    expect(Array.from(packToInt32(Int8Array.of(1, 2), 1, 2, 8))).toEqual([33409]);
  });

  test('the padding of a partial word is raw zero bits, not the code 0', () => {
    expect(Array.from(packToInt32(Int8Array.of(0, 0, 0), 1, 3, 4))).toEqual([0x888]);
    expect(Array.from(packToInt32(Int8Array.of(-8, -8, -8), 1, 3, 4))).toEqual([0]);
  });

  test('each row takes ceil(cols · bits / 32) words', () => {
    expect(packToInt32(new Int8Array(3 * 172), 3, 172, 4).length).toBe(3 * 22);
    expect(packedWidth(352, 4)).toBe(44);
    expect(packedWidth(288, 8)).toBe(72);
    expect(packedWidth(10, 3)).toBe(1);
    expect(packedWidth(11, 3)).toBe(2);
  });

  test('refuses codes that do not match the shape and widths above 8 bits', () => {
    expect(() => packToInt32(new Int8Array(5), 2, 3, 4)).toThrow(PackError);
    expect(() => packToInt32(new Int8Array(6), 2, 3, 16)).toThrow(/num_bits 16 cannot be packed/);
  });
});

describe('unpackFromInt32', () => {
  for (const bits of [2, 3, 4, 5, 8]) {
    for (const cols of [8, 64, 172, 288, 352]) {
      test(`round-trips ${bits}-bit codes of 5 rows × ${cols} columns`, () => {
        const codes = randomCodes(5 * cols, bits, bits * 1000 + cols);
        const packed = packToInt32(codes, 5, cols, bits);
        expect(packed.length).toBe(5 * Math.ceil((cols * bits) / 32));
        expect(unpackFromInt32(packed, 5, cols, bits)).toEqual(codes);
      });
    }
  }

  test('3-bit values straddle word boundaries: element 10 sits in bits 30..32', () => {
    const codes = new Int8Array(11).fill(-4);
    codes[10] = 3; // unsigned 7 = 0b111
    const packed = packToInt32(codes, 1, 11, 3);
    expect((packed[0]! >>> 30) & 3).toBe(3);
    expect(packed[1]! & 1).toBe(1);
    expect(unpackFromInt32(packed, 1, 11, 3)).toEqual(codes);
  });
});

describe('zero point packing', () => {
  test('packs along the output dim: column g of the zero points is one stream', () => {
    const rows = 8;
    const zp = new Int8Array(rows * 2);
    [1, -2, 0, 7, -8, 3, 0, 0].forEach((v, r) => {
      zp[r * 2] = v;
      zp[r * 2 + 1] = -8;
    });
    const packed = packZeroPoints(zp, rows, 2, 4);
    expect(Array.from(packed)).toEqual([-2001667991, 0]);
  });

  test('gives [ceil(rows · bits / 32), groups] and round-trips odd shapes', () => {
    for (const [rows, groups] of [[64, 2], [172, 3], [13, 1]] as const) {
      const zp = randomCodes(rows * groups, 4, rows + groups);
      const packed = packZeroPoints(zp, rows, groups, 4);
      expect(packed.length).toBe(Math.ceil(rows / 8) * groups);
      expect(unpackZeroPoints(packed, rows, groups, 4)).toEqual(zp);
    }
  });
});

describe('packMatMulNBits', () => {
  test('stores code + 8, low nibble first, in blocks of block_size/2 bytes', () => {
    const codes = new Int8Array(32);
    codes.set([1, -2, 0, 7, -8, 3]);
    const b = packMatMulNBits(codes, 1, 32, 32);
    expect(b.dims).toEqual([1, 1, 16]);
    expect(Array.from(b.data.subarray(0, 4))).toEqual([0x69, 0xf8, 0xb0, 0x88]);
  });

  test('symmetric int4 with K a multiple of the block is byte-identical to weight_packed', () => {
    const codes = randomCodes(3 * 256, 4, 9);
    const b = packMatMulNBits(codes, 3, 256, 128);
    const ct = packToInt32(codes, 3, 256, 4);
    expect(b.data).toEqual(new Uint8Array(ct.buffer));
  });

  test('pads a partial last block to a whole blob', () => {
    const b = packMatMulNBits(randomCodes(2 * 172, 4, 3), 2, 172, 128);
    expect(b.dims).toEqual([2, 2, 64]);
    expect(b.data.length).toBe(2 * 2 * 64);
    // padding holds the unsigned zero 8|8<<4
    expect(b.data[2 * 64 - 1]).toBe(0x88);
  });

  test('8-bit codes take one byte each, offset by 128', () => {
    expect(Array.from(packMatMulNBits(Int8Array.from({ length: 16 }, (_, i) => i - 8), 1, 16, 16, 8).data)).toEqual(
      Array.from({ length: 16 }, (_, i) => i + 120),
    );
  });

  test('refuses block sizes that are not powers of two of at least 16', () => {
    expect(() => packMatMulNBits(new Int8Array(48), 1, 48, 48)).toThrow(/block_size 48 is invalid/);
    expect(() => packMatMulNBits(new Int8Array(8), 1, 8, 8)).toThrow(PackError);
  });

  test('zero points pack two per byte per row, low nibble first, rows padded to whole bytes', () => {
    const zp = Int8Array.of(-1, 2, 3, /**/ 0, -8, 7);
    expect(Array.from(packMatMulNBitsZeroPoints(zp, 2, 3))).toEqual([0xa7, 0x0b, 0x08, 0x0f]);
  });
});

describe('pack-quantized checkpoint round trip', () => {
  for (const preset of ['W4A16', 'W4A16_ASYM', 'W8A16'] as const) {
    for (const cols of [172, 352, 288]) {
      test(`${preset} on in_features ${cols}: quantize → pack → unpack → dequantize loses nothing`, () => {
        const rows = 13;
        const args = presetScheme(preset, ['Linear']).weights!;
        const w = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 0.7) + (i % cols === 5 ? 3 : 0));
        const { min, max } = weightMinMax(w, rows, cols, args);
        const qp = computeQParams(min, max, args);
        const [, groups] = qparamShape(rows, cols, args);
        const codes = quantizeWeight(w, rows, cols, qp, args);
        const packed = packToInt32(codes, rows, cols, args.num_bits);
        expect(packed.length).toBe(rows * Math.ceil((cols * args.num_bits) / 32));
        const zp = args.symmetric ? qp.zeroPoint : unpackZeroPoints(packZeroPoints(qp.zeroPoint, rows, groups, args.num_bits), rows, groups, args.num_bits);
        const back = unpackFromInt32(packed, rows, cols, args.num_bits);
        expect(back).toEqual(codes);
        expect(dequantizeWeight(back, rows, cols, { scale: qp.scale, zeroPoint: zp }, args)).toEqual(dequantizeWeight(codes, rows, cols, qp, args));
        if (!args.symmetric) expect(qp.zeroPoint.some((z) => z !== -8 && z !== 0)).toBe(true);
      });
    }
  }
});
