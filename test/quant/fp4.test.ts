import { describe, expect, test } from 'vitest';
import { decodeFp4E2m1, encodeFp4E2m1, FP4_E2M1_VALUES, mxScaleByte, mxScaleValue, roundFp4E2m1 } from '../../src/quant/fp4.js';

describe('fp4 e2m1', () => {
  test('the 16 codes are ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}, bit 3 the sign', () => {
    expect(Array.from(FP4_E2M1_VALUES.subarray(0, 8))).toEqual([0, 0.5, 1, 1.5, 2, 3, 4, 6]);
    expect(Array.from(FP4_E2M1_VALUES.subarray(9))).toEqual([-0.5, -1, -1.5, -2, -3, -4, -6]);
    expect(Object.is(decodeFp4E2m1(8), -0)).toBe(true);
  });

  test('rounds as cast_to_fp4: nearest value, ties to the even code, saturating at 6', () => {
    const cases: [number, number][] = [
      [0.25, 0], // halfway 0 | 0.5 → 0
      [0.2500001, 0.5],
      [0.75, 1], // halfway 0.5 | 1 → 1
      [1.25, 1], // halfway 1 | 1.5 → 1
      [1.75, 2], // halfway 1.5 | 2 → 2
      [2.5, 2], // halfway 2 | 3 → 2
      [3.5, 4], // halfway 3 | 4 → 4
      [5, 4], // halfway 4 | 6 → 4
      [5.0001, 6],
      [100, 6],
      [-2.6, -3],
    ];
    for (const [x, v] of cases) expect(roundFp4E2m1(x), `${x}`).toBe(v);
  });

  test('small negatives round to −0 (code 8), zero to +0, NaN stays NaN', () => {
    expect(Object.is(roundFp4E2m1(-0.1), -0)).toBe(true);
    expect(encodeFp4E2m1(roundFp4E2m1(-0.1))).toBe(8);
    expect(Object.is(roundFp4E2m1(0), 0)).toBe(true);
    expect(roundFp4E2m1(NaN)).toBeNaN();
  });

  test('codes of rounded values: magnitude index with the sign bit', () => {
    expect([0, 0.5, 1, 1.5, 2, 3, 4, 6].map(encodeFp4E2m1)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect([-0.5, -1, -6].map(encodeFp4E2m1)).toEqual([9, 10, 15]);
  });
});

describe('MX e8m0 scales', () => {
  test('max |x| rounds to a power of two (mantissa ≥ 0.75 up), minus the e2m1 exponent 2', () => {
    expect(mxScaleByte(6)).toBe(127); // p = 4 → 2^0
    expect(mxScaleByte(7)).toBe(128); // 1.75 · 4 → p = 8 → 2^1
    expect(mxScaleByte(1)).toBe(125);
    expect(mxScaleByte(Math.fround(1.74))).toBe(125);
    expect(mxScaleByte(1.75)).toBe(126);
    expect(mxScaleValue(125)).toBe(0.25);
  });

  test('an all-zero group gets byte 0 (2^-127), tiny maxima clamp to it, huge ones to 255', () => {
    expect(mxScaleByte(0)).toBe(0);
    expect(mxScaleValue(0)).toBe(2 ** -127);
    expect(mxScaleByte(2 ** -130)).toBe(0); // a float32 subnormal: its exponent field is 0
    expect(mxScaleByte(2 ** -125)).toBe(0); // 127 − 125 − 2 = −0 … clamped
    expect(mxScaleByte(2 ** -124)).toBe(1);
    expect(mxScaleByte(3e38)).toBe(255);
  });
});
