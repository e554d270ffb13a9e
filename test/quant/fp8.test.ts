import { describe, expect, test } from 'vitest';
import { decodeFp8E4m3, encodeFp8E4m3, FP8_E4M3_VALUES, roundFp8E4m3 } from '../../src/quant/fp8.js';

// codes worked out by hand from the bit layout s eeee mmm (bias 7), see src/quant/fp8.ts
describe('fp8 e4m3fn', () => {
  test('normal values encode to their bytes and back', () => {
    const cases: [number, number][] = [
      [1, 0x38],
      [1.5, 0x3c],
      [-1, 0xb8],
      [2, 0x40],
      [448, 0x7e],
      [-448, 0xfe],
      [0.015625, 0x08], // 2^-6, the smallest normal
      [0.1015625, 0x1d], // 1.625 · 2^-4
    ];
    for (const [v, b] of cases) {
      expect(encodeFp8E4m3(v), `${v}`).toBe(b);
      expect(decodeFp8E4m3(b), `0x${b.toString(16)}`).toBe(v);
    }
  });

  test('rounds to nearest, ties to the even mantissa', () => {
    expect(encodeFp8E4m3(1.0625)).toBe(0x38); // halfway 1 | 1.125 → 1 (m = 0)
    expect(encodeFp8E4m3(1.1875)).toBe(0x3a); // halfway 1.125 | 1.25 → 1.25 (m = 2)
    expect(encodeFp8E4m3(1.0626)).toBe(0x39);
    expect(encodeFp8E4m3(0.1)).toBe(0x1d); // 1.6 · 2^-4 → m = 4.8 → 5
    expect(encodeFp8E4m3(1.96875)).toBe(0x40); // halfway 1.875 | 2: the mantissa carries into the exponent
  });

  test('subnormals: steps of 2^-9, ties to even, the last one rounding up into the smallest normal', () => {
    expect(encodeFp8E4m3(2 ** -9)).toBe(0x01);
    expect(encodeFp8E4m3(7 * 2 ** -9)).toBe(0x07);
    expect(encodeFp8E4m3(2 ** -10)).toBe(0x00); // halfway 0 | 2^-9 → 0
    expect(encodeFp8E4m3(1.0001 * 2 ** -10)).toBe(0x01);
    expect(encodeFp8E4m3(3 * 2 ** -10)).toBe(0x02); // halfway 2^-9 | 2·2^-9 → 2·2^-9
    expect(encodeFp8E4m3(7.5 * 2 ** -9)).toBe(0x08); // halfway 7·2^-9 | 2^-6 → the normal 0x08
    expect(encodeFp8E4m3(-3 * 2 ** -10)).toBe(0x82);
    expect(decodeFp8E4m3(0x05)).toBe(5 * 2 ** -9);
  });

  test('saturates past 448, or gives NaN when not saturating', () => {
    expect(encodeFp8E4m3(449)).toBe(0x7e);
    expect(encodeFp8E4m3(464)).toBe(0x7e); // halfway 448 | 480: 448 either way
    expect(encodeFp8E4m3(1e9)).toBe(0x7e);
    expect(encodeFp8E4m3(-Infinity)).toBe(0xfe);
    expect(encodeFp8E4m3(464, false)).toBe(0x7e);
    expect(encodeFp8E4m3(465, false)).toBe(0x7f);
    expect(encodeFp8E4m3(-Infinity, false)).toBe(0xff);
  });

  test('zeros keep their sign, NaN is 0x7F, and both NaN bytes decode to NaN', () => {
    expect(encodeFp8E4m3(0)).toBe(0x00);
    expect(encodeFp8E4m3(-0)).toBe(0x80);
    expect(encodeFp8E4m3(-1e-9)).toBe(0x80);
    expect(Object.is(roundFp8E4m3(-1e-9), -0)).toBe(true);
    expect(encodeFp8E4m3(NaN)).toBe(0x7f);
    expect(decodeFp8E4m3(0x7f)).toBeNaN();
    expect(decodeFp8E4m3(0xff)).toBeNaN();
  });

  test('every finite byte decodes and encodes back to itself', () => {
    for (let b = 0; b < 256; b++) {
      const v = FP8_E4M3_VALUES[b] as number;
      if (Number.isNaN(v)) continue;
      expect(encodeFp8E4m3(v), `0x${b.toString(16)}`).toBe(b);
    }
  });
});
