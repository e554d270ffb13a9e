// ggml's 32-weight block types Q8_0, Q4_0, Q4_1 and Q5_0: qparams and codes computed exactly as ggml's
// reference quantizers compute them (ggml-quants.c quantize_row_{q8_0,q4_0,q4_1,q5_0}_ref, no importance
// matrix), the block bytes as ggml-common.h lays them out, and dequantize_row_<type>.
//
// Qparams (all float32 arithmetic; d and m stored as float16, round to nearest even):
//   Q8_0  amax = max |x|;            d = amax / 127;  q = roundf(x · (1/d))                 value q·d
//   Q4_0  mx = the x of largest |x| (first one on ties); d = mx / −8; q = min(15, trunc(x·(1/d) + 8.5))
//                                                                                          value (q − 8)·d
//   Q5_0  as Q4_0 with d = mx / −16,  q = min(31, trunc(x·(1/d) + 16.5))                    value (q − 16)·d
//   Q4_1  lo = min x, hi = max x (0 is NOT added to the range); d = (hi − lo) / 15;
//         q = min(15, trunc((x − lo)·(1/d) + 0.5)), m = lo                                  value q·d + m
//   d = 0 (all zeros) gives 1/d := 0. The codes use the float32 d, the block stores float16(d).
// With an importance (llama.cpp's imatrix; quantize_row_<type>_impl) Q4_0 and Q5_0 take d and codes from
// make_qx_quants, Q4_1 d, m and codes from make_qkx3_quants, each value weighted by imatrix·sqrt(σ² + x²) with
// σ² = Σx²/cols over the row; Q8_0 ignores the importance, as ggml does.
//
// Bytes of one block (little-endian float16 fields), weights x0..x31:
//   1. Q8_0: [0,2) d | [2,34) q0..q31 as int8
//   2. Q4_0: [0,2) d | [2,18) byte j = q_j | q_{j+16} << 4     (low nibbles hold x0..x15, high x16..x31)
//   3. Q4_1: [0,2) d | [2,4) m | [4,20) nibbles as Q4_0
//   4. Q5_0: [0,2) d | [2,6) qh, a uint32 whose bit j is bit 4 of q_j | [6,22) low nibbles as Q4_0
//   worked example, Q4_0 of x = [−8, −7, …, 23] (x_j = j − 8): mx = 23, d = 23/−8 = −2.875 (float16 0xC1C0),
//     q_0 = trunc(−8·(−0.347826) + 8.5) = trunc(11.2826) = 11, q_31 = trunc(23·(−0.347826) + 8.5) = 0;
//     byte 2 = q_0 | q_16 << 4 = 11 | 5 << 4 = 0x5B.

import { clampInt, fromHalf, roundAway, toHalf, truncOffset } from './ggml-rounding.js';
import { NO_SUBSCALES, readHalf, writeHalf, type GgufBlock, type GgufBlockFormat, type GgufBlockQParams, type GgufImportance } from './gguf-block.js';
import { makeQkx, makeQx } from './ggml-search.js';
import { GGML_TYPES } from './gguf-types.js';

// float32 rounding of one operation, bound locally (an imported binding costs a getter call per use under vitest's loader)
const f = Math.fround;

const QK = 32;
const FLT_MAX = 3.4028234663852886e38;

const qp = (d: number, m = 0): GgufBlockQParams => ({ d, m, scales: NO_SUBSCALES, mins: NO_SUBSCALES });
const inverse = (d: number): number => (d !== 0 ? f(1 / d) : 0);

/** the x of largest magnitude in the block, the first one on ties (ggml's `amax < fabsf(v)` scan) */
function signedAbsMax(x: ArrayLike<number>, o: number): number {
  let amax = 0;
  let mx = 0;
  for (let j = 0; j < QK; j++) {
    const v = x[o + j] as number;
    if (amax < Math.abs(v)) {
      amax = Math.abs(v);
      mx = v;
    }
  }
  return mx;
}

/** quantize_row_<type>_impl's weight of each value: imatrix · sqrt(σ² + x²) */
function importanceWeights(x: ArrayLike<number>, o: number, imp: GgufImportance): Float32Array {
  const w = new Float32Array(QK);
  for (let j = 0; j < QK; j++) {
    const v = x[o + j] as number;
    w[j] = f((imp.weights[imp.offset + j] as number) * f(Math.sqrt(f(imp.rowSigma2 + f(v * v)))));
  }
  return w;
}

function packNibbles(codes: Int8Array, out: Uint8Array, at: number): void {
  for (let j = 0; j < QK / 2; j++) out[at + j] = ((codes[j] as number) & 0x0f) | (((codes[j + QK / 2] as number) & 0x0f) << 4);
}

function unpackNibbles(bytes: Uint8Array, at: number, codes: Int8Array): void {
  for (let j = 0; j < QK / 2; j++) {
    const b = bytes[at + j] as number;
    codes[j] = b & 0x0f;
    codes[j + QK / 2] = b >>> 4;
  }
}

export const Q8_0: GgufBlockFormat = {
  type: GGML_TYPES.Q8_0,
  codeRange: [-128, 127],
  quantize(x, o = 0) {
    let amax = 0;
    for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[o + j] as number));
    const d = f(amax / 127);
    const id = inverse(d);
    const codes = new Int8Array(QK);
    for (let j = 0; j < QK; j++) codes[j] = roundAway(f((x[o + j] as number) * id));
    return { qparams: qp(toHalf(d)), codes };
  },
  qparams(x, o = 0) {
    return this.quantize(x, o).qparams;
  },
  code(p, _i, x) {
    return clampInt(roundAway(f(x * inverse(fromHalf(p.d)))), -128, 127);
  },
  value(p, _i, q) {
    return f(q * fromHalf(p.d));
  },
  pack(b, out, o) {
    writeHalf(out, o, b.qparams.d);
    for (let j = 0; j < QK; j++) out[o + 2 + j] = (b.codes[j] as number) & 0xff;
  },
  unpack(bytes, o) {
    const codes = new Int8Array(QK);
    for (let j = 0; j < QK; j++) codes[j] = ((bytes[o + 2 + j] as number) << 24) >> 24;
    return { qparams: qp(readHalf(bytes, o)), codes };
  },
};

/** Q4_0 and Q5_0: symmetric around the signed absolute maximum, codes offset by 2^(bits−1) */
function symmetricBlock(bits: 4 | 5): Pick<GgufBlockFormat, 'codeRange' | 'quantize' | 'qparams' | 'code' | 'value'> {
  const half = 1 << (bits - 1);
  const top = (1 << bits) - 1;
  const withImportance = (x: ArrayLike<number>, o: number, imp: GgufImportance): GgufBlock => {
    const codes = new Int8Array(QK);
    const d = makeQx(QK, half, x, o, codes, 0, importanceWeights(x, o, imp));
    return { qparams: qp(toHalf(d)), codes };
  };
  return {
    codeRange: [0, top],
    quantize(x, o = 0, imp) {
      if (imp !== undefined) return withImportance(x, o, imp);
      const d = f(signedAbsMax(x, o) / -half);
      const id = inverse(d);
      const codes = new Int8Array(QK);
      for (let j = 0; j < QK; j++) codes[j] = Math.min(top, truncOffset(f((x[o + j] as number) * id), half + 0.5));
      return { qparams: qp(toHalf(d)), codes };
    },
    qparams(x, o = 0, imp) {
      return imp !== undefined ? withImportance(x, o, imp).qparams : qp(toHalf(f(signedAbsMax(x, o) / -half)));
    },
    code(p, _i, x) {
      return clampInt(truncOffset(f(x * inverse(fromHalf(p.d))), half + 0.5), 0, top);
    },
    value(p, _i, q) {
      return f((q - half) * fromHalf(p.d));
    },
  };
}

export const Q4_0: GgufBlockFormat = {
  type: GGML_TYPES.Q4_0,
  ...symmetricBlock(4),
  pack(b, out, o) {
    writeHalf(out, o, b.qparams.d);
    packNibbles(b.codes, out, o + 2);
  },
  unpack(bytes, o) {
    const codes = new Int8Array(QK);
    unpackNibbles(bytes, o + 2, codes);
    return { qparams: qp(readHalf(bytes, o)), codes };
  },
};

export const Q5_0: GgufBlockFormat = {
  type: GGML_TYPES.Q5_0,
  ...symmetricBlock(5),
  pack(b, out, o) {
    writeHalf(out, o, b.qparams.d);
    let qh = 0;
    for (let j = 0; j < QK; j++) qh |= (((b.codes[j] as number) >>> 4) & 1) << j;
    for (let k = 0; k < 4; k++) out[o + 2 + k] = (qh >>> (8 * k)) & 0xff;
    packNibbles(b.codes, out, o + 6);
  },
  unpack(bytes, o) {
    const codes = new Int8Array(QK);
    unpackNibbles(bytes, o + 6, codes);
    for (let j = 0; j < QK; j++) codes[j] = (codes[j] as number) | ((((bytes[o + 2 + (j >>> 3)] as number) >>> (j & 7)) & 1) << 4);
    return { qparams: qp(readHalf(bytes, o)), codes };
  },
};

function minMax(x: ArrayLike<number>, o: number): [number, number] {
  let lo = FLT_MAX;
  let hi = -FLT_MAX;
  for (let j = 0; j < QK; j++) {
    const v = x[o + j] as number;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

export const Q4_1: GgufBlockFormat = {
  type: GGML_TYPES.Q4_1,
  codeRange: [0, 15],
  quantize(x, o = 0, imp) {
    if (imp !== undefined) {
      const codes = new Int8Array(QK);
      const r = makeQkx(QK, 15, x, o, importanceWeights(x, o, imp), 0, codes, 0, { rmin: f(-0.9), rdelta: f(0.05), nstep: 36, x3: true });
      return { qparams: qp(toHalf(r.scale), toHalf(-r.min)), codes };
    }
    const [lo, hi] = minMax(x, o);
    const d = f(f(hi - lo) / 15);
    const id = inverse(d);
    const codes = new Int8Array(QK);
    for (let j = 0; j < QK; j++) codes[j] = Math.min(15, truncOffset(f(f((x[o + j] as number) - lo) * id), 0.5));
    return { qparams: qp(toHalf(d), toHalf(lo)), codes };
  },
  qparams(x, o = 0, imp) {
    if (imp !== undefined) return this.quantize(x, o, imp).qparams;
    const [lo, hi] = minMax(x, o);
    return qp(toHalf(f(f(hi - lo) / 15)), toHalf(lo));
  },
  code(p, _i, x) {
    return clampInt(truncOffset(f(f(x - fromHalf(p.m)) * inverse(fromHalf(p.d))), 0.5), 0, 15);
  },
  value(p, _i, q) {
    return f(f(q * fromHalf(p.d)) + fromHalf(p.m));
  },
  pack(b, out, o) {
    writeHalf(out, o, b.qparams.d);
    writeHalf(out, o + 2, b.qparams.m);
    packNibbles(b.codes, out, o + 4);
  },
  unpack(bytes, o) {
    const codes = new Int8Array(QK);
    unpackNibbles(bytes, o + 4, codes);
    return { qparams: qp(readHalf(bytes, o), readHalf(bytes, o + 2)), codes };
  },
};
