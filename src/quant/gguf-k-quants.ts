// ggml's K-quants Q4_K and Q6_K (super-blocks of 256 weights): the quantizers (ggml-quants.c
// quantize_row_q4_K_ref with make_qkx2_quants, quantize_row_q6_K_ref with make_qx_quants; with an importance
// matrix quantize_row_q4_K_impl / q6_K_impl) ported operation by operation in float32 (ggml-search.ts), the
// bytes as ggml-common.h lays them out, and dequantize_row_q4_K / q6_K.
//
// Q4_K: 8 sub-blocks of 32. Each sub-block s gets a scale a_s and a minimum b_s ≥ 0 from a weighted least-
//   squares search (make_qkx2_quants: weights av_x + |x|, 21 candidate scales), then
//     d = max a_s / 63, dmin = max b_s / 63 (float16), sc_s = nearest_int(63·a_s / max a), m_s likewise (6 bits),
//     q = clamp(nearest_int((x + dmin·m_s) / (d·sc_s)), 0, 15)            value (d·sc_s)·q − dmin·m_s
//   (a sub-block whose d·sc_s is 0 keeps the codes of the search). With an importance: each value weighted by
//   imatrix·sqrt(σ² + x²) (σ² = 2·Σx²/256 over the super-block), make_qkx3_quants per sub-block and
//   make_qp_quants for the 6-bit sub-scales and sub-minimums; the codes as above. Bytes:
//   1. [0,2) d | [2,4) dmin | [4,16) scales | [16,144) qs
//   2. scales (12 bytes, 6-bit fields): for s < 4: byte s = sc_s | (sc_{s+4} >> 4) << 6, byte s+4 = m_s |
//      (m_{s+4} >> 4) << 6; byte s+8 = (sc_{s+4} & 15) | (m_{s+4} & 15) << 4
//   3. qs: 4 chunks of 32 bytes; chunk c byte l = q[64c + l] | q[64c + 32 + l] << 4
//   worked example: sc = [1..8], m = [40..47] → bytes 0..3 = 1,2,3,4 (sc_4..7 = 5..8 < 16: no high bits);
//     bytes 4..7 = 40 | (44 >> 4) << 6 = 40 | 2 << 6 = 0xA8, 0xA9, 0xAA, 0xAB; byte 8 = 5 | (44 & 15) << 4 = 0xC5.
//
// Q6_K: 16 sub-blocks of 16. Each gets a signed scale from make_qx_quants (nmax 32, weights x², 19 candidate
//   scales); d = −(the scale of largest |scale|) / 128, sc_s = min(127, nearest_int(scale_s / d)) (int8),
//     q = clamp(nearest_int(x / (d·sc_s)), −32, 31) + 32                     value (d·sc_s)·(q − 32)
//   Bytes: [0,128) ql | [128,192) qh | [192,208) scales int8 | [208,210) d. Two halves h of 128 weights:
//   ql[64h + l] = q[128h + l] & 15 | (q[128h + 64 + l] & 15) << 4, ql[64h + 32 + l] = q[128h + 32 + l] & 15 |
//   (q[128h + 96 + l] & 15) << 4, qh[32h + l] = the top 2 bits of q[128h + l + 32k] at bits 2k, k = 0..3.

import * as ggml from './ggml-rounding.js';
import { fromHalf, toHalf, toInt8, toUint8 } from './ggml-rounding.js';
import { GROUP_MAX_EPS, makeQkx, makeQp, makeQx } from './ggml-search.js';
import { NO_SUBSCALES, readHalf, writeHalf, type GgufBlockFormat, type GgufBlockQParams, type GgufImportance } from './gguf-block.js';
import { GGML_TYPES } from './gguf-types.js';

// hot-loop helpers bound locally: an imported binding costs a getter call per use under vitest's and tsx's loaders
const f = Math.fround;
const nearestInt = ggml.nearestInt;
const clampInt = ggml.clampInt;

const QK_K = 256;
const TENTH = f(0.1);

function q4kSub(p: GgufBlockQParams, s: number): [number, number] {
  return [f(fromHalf(p.d) * (p.scales[s] as number)), f(fromHalf(p.m) * (p.mins[s] as number))];
}

const QKX2 = { rmin: -1, rdelta: TENTH, nstep: 20, x3: false } as const;
const QKX3 = { rmin: f(-0.9), rdelta: f(0.05), nstep: 36, x3: true } as const;

function packScales(ls: ArrayLike<number>, lm: ArrayLike<number>, d: number, dmin: number): GgufBlockQParams {
  return { d: toHalf(d), m: toHalf(dmin), scales: Int8Array.from(ls), mins: Int8Array.from(lm) };
}

/** quantize_row_q4_K_ref's search: make_qkx2_quants per sub-block, 6-bit sub-scales against the largest */
function q4kSearch(x: ArrayLike<number>, o: number, L: Int8Array): GgufBlockQParams {
  const scales = new Float32Array(8);
  const mins = new Float32Array(8);
  const w = new Float32Array(32);
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 8; j++) {
    let sumX2 = 0;
    for (let l = 0; l < 32; l++) sumX2 = f(sumX2 + f((x[o + 32 * j + l] as number) * (x[o + 32 * j + l] as number)));
    const avX = f(Math.sqrt(f(sumX2 / 32)));
    for (let l = 0; l < 32; l++) w[l] = f(avX + Math.abs(x[o + 32 * j + l] as number));
    const r = makeQkx(32, 15, x, o + 32 * j, w, 0, L, 32 * j, QKX2);
    scales[j] = r.scale;
    mins[j] = r.min;
    if (r.scale > maxScale) maxScale = r.scale;
    if (r.min > maxMin) maxMin = r.min;
  }
  const invScale = maxScale > 0 ? f(63 / maxScale) : 0;
  const invMin = maxMin > 0 ? f(63 / maxMin) : 0;
  const ls = Array.from(scales, (v) => Math.min(63, toUint8(nearestInt(f(invScale * v)))));
  const lm = Array.from(mins, (v) => Math.min(63, toUint8(nearestInt(f(invMin * v)))));
  return packScales(ls, lm, f(maxScale / 63), f(maxMin / 63));
}

/** quantize_row_q4_K_impl's search: make_qkx3_quants weighted by imatrix · sqrt(σ² + x²), make_qp_quants sub-scales */
function q4kSearchImportance(x: ArrayLike<number>, o: number, L: Int8Array, imp: GgufImportance): GgufBlockQParams {
  let sumX2 = 0;
  for (let l = 0; l < QK_K; l++) sumX2 = f(sumX2 + f((x[o + l] as number) * (x[o + l] as number)));
  const sigma2 = f(f(2 * sumX2) / QK_K);
  const scales = new Float32Array(8);
  const mins = new Float32Array(8);
  const sw = new Float32Array(8);
  const w = new Float32Array(32);
  for (let j = 0; j < 8; j++) {
    let sum = 0;
    for (let l = 0; l < 32; l++) {
      const v = x[o + 32 * j + l] as number;
      w[l] = f((imp.weights[imp.offset + 32 * j + l] as number) * f(Math.sqrt(f(sigma2 + f(v * v)))));
      sum = f(sum + (w[l] as number));
    }
    sw[j] = sum;
    const r = makeQkx(32, 15, x, o + 32 * j, w, 0, L, 32 * j, QKX3);
    scales[j] = r.scale;
    mins[j] = r.min;
  }
  const ls = new Int8Array(8);
  const lm = new Int8Array(8);
  const d = makeQp(8, 63, scales, ls, sw);
  const m = makeQp(8, 63, mins, lm, sw);
  return packScales(ls, lm, d, m);
}

export const Q4_K: GgufBlockFormat = {
  type: GGML_TYPES.Q4_K,
  codeRange: [0, 15],
  quantize(x, o = 0, imp) {
    const codes = new Int8Array(QK_K);
    const p = imp !== undefined ? q4kSearchImportance(x, o, codes, imp) : q4kSearch(x, o, codes);
    for (let j = 0; j < 8; j++) {
      const [d, dm] = q4kSub(p, j);
      if (d === 0) continue;
      for (let i = 0; i < 32; i++) codes[32 * j + i] = clampInt(nearestInt(f(f((x[o + 32 * j + i] as number) + dm) / d)), 0, 15);
    }
    return { qparams: p, codes };
  },
  qparams(x, o = 0, imp) {
    return imp !== undefined ? q4kSearchImportance(x, o, new Int8Array(QK_K), imp) : q4kSearch(x, o, new Int8Array(QK_K));
  },
  code(p, i, x) {
    const [d, dm] = q4kSub(p, i >>> 5);
    return d === 0 ? 0 : clampInt(nearestInt(f(f(x + dm) / d)), 0, 15);
  },
  value(p, i, q) {
    const [d, dm] = q4kSub(p, i >>> 5);
    return f(f(d * q) - dm);
  },
  pack(b, out, o) {
    const { d, m, scales: sc, mins } = b.qparams;
    writeHalf(out, o, d);
    writeHalf(out, o + 2, m);
    const s = o + 4;
    for (let j = 0; j < 4; j++) {
      out[s + j] = (sc[j] as number) | (((sc[j + 4] as number) >>> 4) << 6);
      out[s + j + 4] = (mins[j] as number) | (((mins[j + 4] as number) >>> 4) << 6);
      out[s + j + 8] = ((sc[j + 4] as number) & 0x0f) | (((mins[j + 4] as number) & 0x0f) << 4);
    }
    for (let c = 0; c < 4; c++) {
      for (let l = 0; l < 32; l++) out[o + 16 + 32 * c + l] = (b.codes[64 * c + l] as number) | ((b.codes[64 * c + 32 + l] as number) << 4);
    }
  },
  unpack(bytes, o) {
    const sc = new Int8Array(8);
    const mins = new Int8Array(8);
    const s = o + 4;
    for (let j = 0; j < 4; j++) {
      sc[j] = (bytes[s + j] as number) & 63;
      mins[j] = (bytes[s + j + 4] as number) & 63;
      sc[j + 4] = ((bytes[s + j + 8] as number) & 0x0f) | (((bytes[s + j] as number) >>> 6) << 4);
      mins[j + 4] = ((bytes[s + j + 8] as number) >>> 4) | (((bytes[s + j + 4] as number) >>> 6) << 4);
    }
    const codes = new Int8Array(QK_K);
    for (let c = 0; c < 4; c++) {
      for (let l = 0; l < 32; l++) {
        const v = bytes[o + 16 + 32 * c + l] as number;
        codes[64 * c + l] = v & 0x0f;
        codes[64 * c + 32 + l] = v >>> 4;
      }
    }
    return { qparams: { d: readHalf(bytes, o), m: readHalf(bytes, o + 2), scales: sc, mins }, codes };
  },
};

const Q6K_ZERO: GgufBlockQParams = { d: 0, m: 0, scales: new Int8Array(16), mins: NO_SUBSCALES };

/** quantize_row_q6_K_ref's search (make_qx_quants weighted by x²), or _impl's (weighted by the importance) */
function q6kSearch(x: ArrayLike<number>, o: number, L: Int8Array, imp?: GgufImportance): GgufBlockQParams {
  const scales = new Float32Array(16);
  let maxScale = 0;
  let maxAbs = 0;
  for (let ib = 0; ib < 16; ib++) {
    const s = makeQx(16, 32, x, o + 16 * ib, L, 16 * ib, imp?.weights, (imp?.offset ?? 0) + 16 * ib);
    scales[ib] = s;
    if (Math.abs(s) > maxAbs) {
      maxAbs = Math.abs(s);
      maxScale = s;
    }
  }
  if (maxAbs < GROUP_MAX_EPS) return Q6K_ZERO;
  const iscale = f(-128 / maxScale);
  const sc = new Int8Array(16);
  for (let ib = 0; ib < 16; ib++) sc[ib] = toInt8(Math.min(127, nearestInt(f(iscale * (scales[ib] as number)))));
  return { d: toHalf(f(1 / iscale)), m: 0, scales: sc, mins: NO_SUBSCALES };
}

const q6kStep = (p: GgufBlockQParams, s: number): number => f(fromHalf(p.d) * (p.scales[s] as number));

export const Q6_K: GgufBlockFormat = {
  type: GGML_TYPES.Q6_K,
  codeRange: [0, 63],
  quantize(x, o = 0, imp) {
    const codes = new Int8Array(QK_K);
    const p = q6kSearch(x, o, codes, imp);
    // an all-zero super-block is stored as 210 zero bytes: codes 0, not 32
    if (p === Q6K_ZERO) return { qparams: { ...Q6K_ZERO, scales: new Int8Array(16) }, codes: new Int8Array(QK_K) };
    for (let j = 0; j < 16; j++) {
      const d = q6kStep(p, j);
      if (d === 0) continue;
      for (let i = 0; i < 16; i++) codes[16 * j + i] = clampInt(nearestInt(f((x[o + 16 * j + i] as number) / d)), -32, 31) + 32;
    }
    return { qparams: p, codes };
  },
  qparams(x, o = 0, imp) {
    const p = q6kSearch(x, o, new Int8Array(QK_K), imp);
    return p === Q6K_ZERO ? { ...Q6K_ZERO, scales: new Int8Array(16) } : p;
  },
  code(p, i, x) {
    const d = q6kStep(p, i >>> 4);
    return d === 0 ? 32 : clampInt(nearestInt(f(x / d)), -32, 31) + 32;
  },
  value(p, i, q) {
    return f(q6kStep(p, i >>> 4) * (q - 32));
  },
  pack(b, out, o) {
    const L = b.codes;
    for (let h = 0; h < 2; h++) {
      const j = 128 * h;
      for (let l = 0; l < 32; l++) {
        const q1 = L[j + l] as number;
        const q2 = L[j + l + 32] as number;
        const q3 = L[j + l + 64] as number;
        const q4 = L[j + l + 96] as number;
        out[o + 64 * h + l] = (q1 & 0x0f) | ((q3 & 0x0f) << 4);
        out[o + 64 * h + l + 32] = (q2 & 0x0f) | ((q4 & 0x0f) << 4);
        out[o + 128 + 32 * h + l] = (q1 >>> 4) | ((q2 >>> 4) << 2) | ((q3 >>> 4) << 4) | ((q4 >>> 4) << 6);
      }
    }
    for (let s = 0; s < 16; s++) out[o + 192 + s] = (b.qparams.scales[s] as number) & 0xff;
    writeHalf(out, o + 208, b.qparams.d);
  },
  unpack(bytes, o) {
    const codes = new Int8Array(QK_K);
    for (let h = 0; h < 2; h++) {
      const j = 128 * h;
      for (let l = 0; l < 32; l++) {
        const a = bytes[o + 64 * h + l] as number;
        const b = bytes[o + 64 * h + l + 32] as number;
        const hi = bytes[o + 128 + 32 * h + l] as number;
        codes[j + l] = (a & 0x0f) | ((hi & 3) << 4);
        codes[j + l + 32] = (b & 0x0f) | (((hi >>> 2) & 3) << 4);
        codes[j + l + 64] = (a >>> 4) | (((hi >>> 4) & 3) << 4);
        codes[j + l + 96] = (b >>> 4) | (((hi >>> 6) & 3) << 4);
      }
    }
    const sc = new Int8Array(16);
    for (let s = 0; s < 16; s++) sc[s] = toInt8(bytes[o + 192 + s] as number);
    return { qparams: { d: readHalf(bytes, o + 208), m: 0, scales: sc, mins: NO_SUBSCALES }, codes };
  },
};
