import { describe, expect, test } from 'vitest';
import {
  bfloat16FromBits,
  bfloat16ToNumber,
  float16FromBits,
  float16ToNumber,
  float32Bits,
  fromBfloat16,
  fromFloat16,
  toBfloat16,
  toFloat16,
} from '../../src/quant/half.js';

const hex = (n: number) => `0x${n.toString(16).padStart(4, '0')}`;
const isBf16NaN = (h: number) => (h & 0x7f80) === 0x7f80 && (h & 0x007f) !== 0;
const isF16NaN = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x03ff) !== 0;

function floatsFromBits(bits: number[]): Float32Array {
  return new Float32Array(Uint32Array.from(bits).buffer);
}

describe('bfloat16', () => {
  const cases: [number, number, string][] = [
    [0x3f800000, 0x3f80, '1.0 exactly'],
    [0x3f808000, 0x3f80, 'a tie with an even kept part stays'],
    [0x3f818000, 0x3f82, 'a tie with an odd kept part rounds up to even'],
    [0x3f808001, 0x3f81, 'just above the tie rounds up'],
    [0x3f807fff, 0x3f80, 'just below the tie rounds down'],
    [0xbf818000, 0xbf82, 'negative ties round to even magnitude'],
    [0x7f7fffff, 0x7f80, 'float32 max rounds up to +Inf'],
    [0xff7fffff, 0xff80, 'float32 -max rounds to -Inf'],
    [0x7f800000, 0x7f80, '+Inf stays Inf'],
    [0x80000000, 0x8000, '-0 keeps its sign'],
    [0x00018000, 0x0002, 'a subnormal tie rounds to even'],
    [0x00008000, 0x0000, 'half the smallest subnormal rounds to zero'],
  ];
  test.each(cases.map(([f32, bf16, why]) => ({ f32, bf16, why, from: `0x${f32.toString(16)}`, to: hex(bf16) })))(
    'float32 bits $from become bfloat16 $to ($why)',
    ({ f32, bf16 }) => {
      expect(hex(bfloat16FromBits(f32))).toBe(hex(bf16));
      expect(hex(toBfloat16(floatsFromBits([f32]))[0]!)).toBe(hex(bf16));
    },
  );

  test('NaN stays NaN even when its payload sits only in the dropped bits', () => {
    for (const bits of [0x7fc00000, 0x7f800001, 0xff800001, 0x7fbfffff]) {
      expect(isBf16NaN(bfloat16FromBits(bits))).toBe(true);
    }
  });

  test('widening is exact: bfloat16 0x3f80 is 1, 0xc000 is -2, 0x7f80 is Inf', () => {
    expect(bfloat16ToNumber(0x3f80)).toBe(1);
    expect(bfloat16ToNumber(0xc000)).toBe(-2);
    expect(bfloat16ToNumber(0x7f80)).toBe(Infinity);
    expect(Array.from(fromBfloat16(Uint16Array.from([0x4049, 0x0001])))).toEqual([3.140625, 2 ** -133]);
  });

  test('every bfloat16 pattern survives widening and narrowing unchanged', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = toBfloat16(fromBfloat16(all));
    for (let h = 0; h < 65536; h++) {
      if (isBf16NaN(h)) expect(isBf16NaN(back[h]!)).toBe(true);
      else if (back[h] !== h) expect(hex(back[h]!)).toBe(hex(h));
    }
  });
});

describe('float16', () => {
  const narrow: [number, number][] = [
    [1, 0x3c00],
    [-2, 0xc000],
    [0.1, 0x2e66],
    [1 / 3, 0x3555],
    [65504, 0x7bff],
    [65519, 0x7bff],
    [65520, 0x7c00],
    [1e6, 0x7c00],
    [-1e6, 0xfc00],
    [-Infinity, 0xfc00],
    [-0, 0x8000],
    [2 ** -14, 0x0400],
    [2 ** -24, 0x0001],
    [2 ** -25, 0x0000],
    [1.5 * 2 ** -25, 0x0001],
    [1.5 * 2 ** -24, 0x0002],
    [2.5 * 2 ** -24, 0x0002],
    [1023.5 * 2 ** -24, 0x0400],
    [1 + 2 ** -11, 0x3c00],
    [1 + 3 * 2 ** -11, 0x3c02],
    [1e-10, 0x0000],
  ];
  test.each(narrow.map(([x, h]) => ({ x, h, to: hex(h) })))('$x becomes float16 $to', ({ x, h }) => {
    expect(hex(float16FromBits(float32Bits(x)))).toBe(hex(h));
    expect(hex(toFloat16(Float32Array.of(x))[0]!)).toBe(hex(h));
  });

  test('NaN stays NaN, including payloads only in the dropped bits', () => {
    for (const bits of [0x7fc00000, 0x7f800001, 0xffc00000]) expect(isF16NaN(float16FromBits(bits))).toBe(true);
  });

  const widen: [number, number][] = [
    [0x0001, 2 ** -24],
    [0x03ff, 1023 * 2 ** -24],
    [0x0400, 2 ** -14],
    [0x3c00, 1],
    [0xc000, -2],
    [0x3555, 0.333251953125],
    [0x7bff, 65504],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
  ];
  test.each(widen.map(([h, x]) => ({ h, x, from: hex(h) })))('float16 $from widens to exactly $x', ({ h, x }) => {
    expect(float16ToNumber(h)).toBe(x);
    expect(fromFloat16(Uint16Array.of(h))[0]).toBe(x);
  });

  test('float16 NaN and -0 widen to NaN and -0', () => {
    expect(float16ToNumber(0x7e00)).toBeNaN();
    expect(Object.is(float16ToNumber(0x8000), -0)).toBe(true);
  });

  test('every float16 pattern survives widening and narrowing unchanged', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = toFloat16(fromFloat16(all));
    for (let h = 0; h < 65536; h++) {
      if (isF16NaN(h)) expect(isF16NaN(back[h]!)).toBe(true);
      else if (back[h] !== h) expect(hex(back[h]!)).toBe(hex(h));
    }
  });

  test('narrowing picks the nearest float16, and the even one on a tie', () => {
    // xorshift over float32 bit patterns from 2^-25 up to the largest finite float16
    let s = 0x9e3779b9;
    for (let i = 0; i < 20000; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      const bits = (0x33000000 + ((s >>> 0) % (0x477fe000 - 0x33000000))) >>> 0;
      const x = floatsFromBits([bits])[0]!;
      const h = float16FromBits(bits);
      const err = Math.abs(float16ToNumber(h) - x);
      for (const n of [h - 1, h + 1]) {
        if (n < 0 || n > 0x7c00) continue;
        const other = Math.abs(float16ToNumber(n) - x);
        if (other < err || (other === err && (h & 1) === 1)) {
          expect.fail(`${x} (bits ${bits.toString(16)}) became ${hex(h)}, but ${hex(n)} is nearer or an even tie`);
        }
      }
    }
  });
});
