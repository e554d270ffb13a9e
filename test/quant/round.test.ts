import { describe, expect, test } from 'vitest';
import { roundHalfEven, roundHalfEvenArray } from '../../src/quant/round.js';

describe('roundHalfEven', () => {
  test('ties go to the even neighbour', () => {
    expect(roundHalfEven(0.5)).toBe(0);
    expect(roundHalfEven(1.5)).toBe(2);
    expect(roundHalfEven(2.5)).toBe(2);
    expect(roundHalfEven(3.5)).toBe(4);
    expect(roundHalfEven(-1.5)).toBe(-2);
    expect(roundHalfEven(-2.5)).toBe(-2);
    expect(roundHalfEven(-3.5)).toBe(-4);
  });

  test('differs from Math.round exactly on ties toward an odd integer', () => {
    expect(Math.round(2.5)).toBe(3);
    expect(roundHalfEven(2.5)).toBe(2);
    expect(Math.round(-1.5)).toBe(-1);
    expect(roundHalfEven(-1.5)).toBe(-2);
  });

  test('non-ties round to the nearest integer', () => {
    expect(roundHalfEven(2.4999999)).toBe(2);
    expect(roundHalfEven(2.5000001)).toBe(3);
    expect(roundHalfEven(-2.5000001)).toBe(-3);
    expect(roundHalfEven(0.49999999999999994)).toBe(0);
    expect(roundHalfEven(7)).toBe(7);
  });

  test('keeps the sign of zero as torch.round does', () => {
    expect(Object.is(roundHalfEven(-0.5), -0)).toBe(true);
    expect(Object.is(roundHalfEven(-0.2), -0)).toBe(true);
    expect(Object.is(roundHalfEven(0.5), 0)).toBe(true);
  });

  test('large values, already integers, are unchanged', () => {
    expect(roundHalfEven(2 ** 52 + 1)).toBe(2 ** 52 + 1);
    expect(roundHalfEven(-(2 ** 53))).toBe(-(2 ** 53));
    expect(roundHalfEven(8388608.5)).toBe(8388608);
    expect(roundHalfEven(8388609.5)).toBe(8388610);
    expect(roundHalfEven(Infinity)).toBe(Infinity);
    expect(roundHalfEven(NaN)).toBeNaN();
  });
});

describe('roundHalfEvenArray', () => {
  test('rounds every element into a new array', () => {
    const x = Float32Array.of(0.5, 1.5, 2.5, -2.5, 2.6);
    expect(Array.from(roundHalfEvenArray(x))).toEqual([0, 2, 2, -2, 3]);
    expect(Array.from(x)).toEqual([0.5, 1.5, 2.5, -2.5, Math.fround(2.6)]);
  });

  test('writes into a given output and refuses one of the wrong length', () => {
    const out = new Float32Array(2);
    expect(roundHalfEvenArray(Float32Array.of(4.5, 5.5), out)).toBe(out);
    expect(Array.from(out)).toEqual([4, 6]);
    expect(() => roundHalfEvenArray(Float32Array.of(1), out)).toThrow(/2 elements, expected 1/);
  });
});
