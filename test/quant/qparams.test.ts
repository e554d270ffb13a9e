import { describe, expect, test } from 'vitest';
import {
  FP32_EPS,
  QuantShapeError,
  columnGroups,
  computeQParams,
  dequantizeWeight,
  fakeQuantizeWeight,
  qRange,
  qparamShape,
  quantizeWeight,
  weightMinMax,
} from '../../src/quant/qparams.js';

const f32 = (...v: number[]) => Float32Array.from(v);
const fromBits = (hex: number[]) => new Float32Array(Uint32Array.from(hex).buffer);
const bitsOf = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
const sym4 = { num_bits: 4, symmetric: true } as const;
const asym4 = { num_bits: 4, symmetric: false } as const;

describe('qRange', () => {
  test('is the signed range of the bit width', () => {
    expect(qRange(4)).toEqual({ qmin: -8, qmax: 7 });
    expect(qRange(8)).toEqual({ qmin: -128, qmax: 127 });
  });
});

describe('computeQParams', () => {
  test('symmetric scale is max(|min|, |max|) / 7.5 for int4 and / 127.5 for int8, zero point 0', () => {
    const q = computeQParams(f32(-7.5, -3), f32(1, 15), sym4);
    expect(Array.from(q.scale)).toEqual([1, 2]);
    expect(Array.from(q.zeroPoint)).toEqual([0, 0]);
    expect(Array.from(computeQParams(f32(-255), f32(3), { num_bits: 8, symmetric: true }).scale)).toEqual([2]);
  });

  test('asymmetric scale is (max − min) / 15 and zp = round(−8 − min / scale)', () => {
    const q = computeQParams(f32(-1), f32(14), asym4);
    expect(Array.from(q.scale)).toEqual([1]);
    expect(Array.from(q.zeroPoint)).toEqual([-7]);
  });

  test('the zero point rounds half to even (−7.5 → −8, where Math.round gives −7)', () => {
    const q = computeQParams(f32(-0.5), f32(14.5), asym4);
    expect(Array.from(q.scale)).toEqual([1]);
    expect(Array.from(q.zeroPoint)).toEqual([-8]);
  });

  test('min and max are widened to include 0', () => {
    const pos = computeQParams(f32(3), f32(6), asym4);
    expect(Array.from(pos.scale)).toEqual([Math.fround(6 / 15)]);
    expect(Array.from(pos.zeroPoint)).toEqual([-8]);
    const neg = computeQParams(f32(-6), f32(-3), asym4);
    expect(Array.from(neg.zeroPoint)).toEqual([7]);
  });

  test('an all-zero slice gets the fp32 epsilon as scale', () => {
    expect(Array.from(computeQParams(f32(0), f32(0), sym4).scale)).toEqual([FP32_EPS]);
    expect(FP32_EPS).toBe(1.1920928955078125e-7);
    const a = computeQParams(f32(0), f32(0), asym4);
    expect(Array.from(a.scale)).toEqual([FP32_EPS]);
    expect(Array.from(a.zeroPoint)).toEqual([-8]);
  });

  test('refuses min and max of different lengths', () => {
    expect(() => computeQParams(f32(0, 1), f32(1), sym4)).toThrow(QuantShapeError);
  });

  test('scales are rounded to the stored dtype (bf16, fp16) before the zero point is computed from them', () => {
    // 1 / 7.5 = 0.1333…: bf16 keeps 8 significant bits (137 / 1024), fp16 11 (1092 / 8192), fp32 24
    const [b, h, s] = (['bfloat16', 'float16', 'float32'] as const).map((d) => computeQParams(f32(-1), f32(0.5), sym4, undefined, d).scale[0] as number);
    expect(b).toBe(0.1337890625);
    expect(h).toBe(0.13330078125);
    expect(s).toBe(Math.fround(1 / 7.5));
    // asymmetric: (0.9 + 0.5) / 15 in bf16 = 0.09326171875, zp = round(−8 + 0.5 / 0.09326…) = round(−2.638…) = −3
    const a = computeQParams(f32(-0.5), f32(0.9), asym4, undefined, 'bfloat16');
    expect(Array.from(a.scale)).toEqual([0.09326171875]);
    expect(Array.from(a.zeroPoint)).toEqual([-3]);
    // fp8 scales (m / 448) likewise; a scale fp16 flushes to 0 is clamped to the fp32 epsilon
    expect(computeQParams(f32(-1), f32(1), { num_bits: 8, symmetric: true, type: 'float' }, undefined, 'bfloat16').scale[0]).toBe(0.002227783203125);
    expect(computeQParams(f32(-1e-9), f32(0), sym4, undefined, 'float16').scale[0]).toBe(FP32_EPS);
  });
});

describe('weightMinMax', () => {
  const w = f32(1, -2, 3, 4, 5, /**/ -6, 7, 0.5, -0.5, 9);
  test('tensor strategy observes the whole weight', () => {
    const m = weightMinMax(w, 2, 5, { strategy: 'tensor', group_size: null });
    expect([...m.min, ...m.max]).toEqual([-6, 9]);
  });
  test('channel strategy observes each output row', () => {
    const m = weightMinMax(w, 2, 5, { strategy: 'channel', group_size: null });
    expect(Array.from(m.min)).toEqual([-2, -6]);
    expect(Array.from(m.max)).toEqual([5, 9]);
  });
  test('group strategy observes groups of input columns, the last one partial', () => {
    const m = weightMinMax(w, 2, 5, { strategy: 'group', group_size: 2 });
    expect(Array.from(m.min)).toEqual([-2, 3, 5, -6, -0.5, 9]);
    expect(Array.from(m.max)).toEqual([1, 4, 5, 7, 0.5, 9]);
  });
  test('refuses a weight whose length does not match its shape, and token strategy', () => {
    expect(() => weightMinMax(w, 3, 5, { strategy: 'channel', group_size: null })).toThrow(/\[3, 5\] needs 15/);
    expect(() => weightMinMax(w, 2, 5, { strategy: 'token', group_size: null })).toThrow(/applies to activations/);
  });
});

describe('qparamShape', () => {
  test('has ceil(in / group) scale columns', () => {
    expect(qparamShape(64, 172, { strategy: 'group', group_size: 128 })).toEqual([64, 2]);
    expect(qparamShape(64, 352, { strategy: 'group', group_size: 128 })).toEqual([64, 3]);
    expect(qparamShape(64, 64, { strategy: 'group', group_size: 128 })).toEqual([64, 1]);
    expect(qparamShape(64, 172, { strategy: 'channel', group_size: null })).toEqual([64, 1]);
    expect(qparamShape(64, 172, { strategy: 'tensor', group_size: null })).toEqual([1, 1]);
  });
});

describe('quantizeWeight / dequantizeWeight', () => {
  const channel = { ...sym4, strategy: 'channel', group_size: null } as const;
  test('rounds half to even and clamps to [qmin, qmax]', () => {
    const w = f32(2.5, 3.5, -2.5, 0.5, 1.5, 9, -9, 7.5);
    const qp = { scale: f32(1), zeroPoint: Int8Array.of(0) };
    expect(Array.from(quantizeWeight(w, 1, 8, qp, channel))).toEqual([2, 4, -2, 0, 2, 7, -8, 7]);
  });

  test('adds the zero point before clamping, and subtracts it when dequantizing', () => {
    const args = { ...asym4, strategy: 'channel', group_size: null } as const;
    const qp = { scale: f32(0.5), zeroPoint: Int8Array.of(-7) };
    const codes = quantizeWeight(f32(0, 0.25, 7, -1), 1, 4, qp, args);
    // 0.25 / 0.5 − 7 = −6.5 is a tie: it goes to −6
    expect(Array.from(codes)).toEqual([-7, -6, 7, -8]);
    expect(Array.from(dequantizeWeight(codes, 1, 4, qp, args))).toEqual([0, 0.5, 7, -0.5]);
  });

  test('g_idx sends each column to its own group', () => {
    const args = { ...sym4, strategy: 'group', group_size: 2 } as const;
    const qp = { scale: f32(1, 0.5), zeroPoint: Int8Array.of(0, 0) };
    const w = f32(1, 1, 1, 1);
    expect(Array.from(quantizeWeight(w, 1, 4, qp, args))).toEqual([1, 1, 2, 2]);
    expect(Array.from(quantizeWeight(w, 1, 4, qp, args, Int32Array.of(1, 0, 1, 0)))).toEqual([2, 1, 2, 1]);
    expect(() => quantizeWeight(w, 1, 4, qp, args, Int32Array.of(0, 2, 0, 0))).toThrow(/g_idx\[1\] = 2 is outside the 2 groups/);
    expect(Array.from(columnGroups(5, args))).toEqual([0, 0, 1, 1, 2]);
  });

  test('refuses qparams of the wrong shape', () => {
    const args = { ...sym4, strategy: 'group', group_size: 2 } as const;
    expect(() => quantizeWeight(f32(1, 2, 3), 1, 3, { scale: f32(1), zeroPoint: Int8Array.of(0) }, args)).toThrow(/needs \[1, 2\]/);
  });
});

// reference computed with numpy float32, op for op as torch runs compressed-tensors (calculate_qparams,
// fake_quantize with an int8 zero point): w [2, 10], int4, group 4 (last group partial)
const W = fromBits([
  0x3e99999a, 0x3e98f52d, 0xbe8c5bcc, 0xbf63fdd4, 0xbee8ca9c, 0xbf7ddc8c, 0x3d765923, 0x3fab8c2c, 0xbefc027e, 0xbf1ed771,
  0x3efacc94, 0x3eb6b9e5, 0x3dd7e36d, 0xbf6e3327, 0xbcefa185, 0x3f31ff64, 0xbfac0f39, 0xbeea4c9d, 0xbff35b44, 0xbfd9999a,
]);
const REF = {
  sym: {
    scale: [0x3df330e2, 0x3e36fbeb, 0x3da96e56, 0x3dfe146e, 0x3e3787b4, 0x3e81ca46],
    zp: [0, 0, 0, 0, 0, 0],
    codes: [3, 3, -2, -8, -3, -6, 0, 7, -6, -8, 4, 3, 1, -8, 0, 4, -8, -3, -8, -7],
    fq: [
      0x3eb664aa, 0x3eb664aa, 0xbe7330e2, 0xbf7330e2, 0xbf093cf0, 0xbf893cf0, 0x0, 0x3fa01c6e, 0xbefe2581, 0xbf296e56,
      0x3efe146e, 0x3ebe8f52, 0x3dfe146e, 0xbf7e146e, 0x80000000, 0x3f3787b4, 0xbfb787b4, 0xbf09a5c7, 0xc001ca46, 0xbfe321fa,
    ],
  },
  asym: {
    scale: [0x3da28e33, 0x3e1f303d, 0x3d296e56, 0x3dc1eb6f, 0x3e0b3b29, 0x3e01ca46],
    zp: [3, -2, 7, 2, 2, 7],
    codes: [7, 7, 0, -8, -5, -8, -2, 7, -5, -8, 7, 6, 3, -8, 2, 7, -8, -1, -8, -6],
    fq: [
      0x3ea28e33, 0x3ea28e33, 0xbe73d54c, 0xbf5f8386, 0xbeeec85c, 0xbf6ec85c, 0x0, 0x3fb31645, 0xbefe2581, 0xbf1ed771,
      0x3ef2664b, 0x3ec1eb6f, 0x3dc1eb6f, 0xbf72664b, 0x0, 0x3f2e09f3, 0xbfae09f3, 0xbed0d8be, 0xbff35b43, 0xbfd2e8b2,
    ],
  },
};

describe('bit-exactness with compressed-tensors (fp32)', () => {
  for (const [name, symmetric] of [['sym', true], ['asym', false]] as const) {
    test(`${name} int4 group 4 on 10 columns matches the reference bit for bit, signed zeros included`, () => {
      const args = { num_bits: 4, symmetric, strategy: 'group', group_size: 4 } as const;
      const { min, max } = weightMinMax(W, 2, 10, args);
      const qp = computeQParams(min, max, args);
      expect(bitsOf(qp.scale)).toEqual(REF[name].scale);
      expect(Array.from(qp.zeroPoint)).toEqual(REF[name].zp);
      const codes = quantizeWeight(W, 2, 10, qp, args);
      expect(Array.from(codes)).toEqual(REF[name].codes);
      expect(bitsOf(fakeQuantizeWeight(W, 2, 10, qp, args))).toEqual(REF[name].fq);
      // dequantizing the codes gives the same values up to the sign of zero
      expect(Array.from(dequantizeWeight(codes, 2, 10, qp, args))).toEqual(Array.from(fromBits(REF[name].fq)).map((v) => v + 0));
    });
  }
});
