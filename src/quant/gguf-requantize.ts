// Requantizing an integer compressed-tensors result (W4A16 group 128, W8A16 channel, …) to a GGUF block type,
// for the gguf output: the fake-quantized weight (what the method chose) becomes 32-weight blocks.
//
//   scheme                       block  per block of 32 columns whose source qparams are one (s, z) per row
//   int ≤ 4 bits, symmetric      Q4_0   d = f16(s), codes q + 8            value (q' − 8)·d = q·f16(s)
//   int ≤ 4 bits, asymmetric     Q4_1   d = f16(s), m = f16((qmin − z)·s)  value q'·d + m  = (q − z)·s
//   int 5–8 bits (either)        Q8_0   d = f16(s), codes q − z            value q'·d      = (q − z)·s
//
// Every source grid point is then a block grid point at the source's own step, and the codes are the block
// format's nearest codes (`format.code`) under those stored qparams: the cost is the float16 rounding of s
// (and of Q4_1's minimum), ≤ 2⁻¹¹ relative per block scale. A block whose 32 columns span several source
// groups (group_size not a multiple of 32, actorder's g_idx) or whose scale float16 cannot hold takes ggml's
// reference quantizer instead; every block keeps whichever of the two is closer to the fake-quantized
// values, so requantizing never loses to llama-quantize run on the fake-quantized weights.

import { toHalf } from './ggml-rounding.js';
import { NO_SUBSCALES, quantizeWith, type GgufBlock, type GgufBlockQParams } from './gguf-block.js';
import { BLOCK_FORMATS, type GgufBlockTypeName } from './gguf-quantize.js';
import { qRange } from './element.js';
import type { QuantArgs } from './quant-args.js';
import { fromBlocks, type GgufWeight } from './gguf-weight.js';

const QK = 32;
const f = Math.fround;


/** the source's qparams as a layer state stores them */
export interface SourceQParams {
  readonly args: Pick<QuantArgs, 'num_bits' | 'symmetric' | 'strategy' | 'group_size'>;
  /** [rows, groups] (channel: [rows, 1]; tensor: [1, 1]) */
  readonly scale: Float32Array;
  readonly zeroPoint?: Int8Array | undefined;
  /** actorder: each column's group */
  readonly gIdx?: Int32Array | undefined;
}

/** index into scale / zero point of column c of row r, per the source's strategy; undefined for block layouts */
function qparamIndex(src: SourceQParams, rows: number): ((r: number, c: number) => number) | undefined {
  const { strategy, group_size: gs } = src.args;
  if (strategy === 'tensor') return () => 0;
  if (strategy === 'channel') return (r) => r;
  if (strategy !== 'group' || typeof gs !== 'number') return undefined;
  const groups = src.scale.length / rows;
  const g = src.gIdx;
  return (r, c) => r * groups + (g !== undefined ? (g[c] as number) : Math.floor(c / gs));
}

const sqErr = (format: (typeof BLOCK_FORMATS)[GgufBlockTypeName], b: GgufBlock, x: Float32Array, o: number): number => {
  let e = 0;
  for (let i = 0; i < QK; i++) e += (format.value(b.qparams, i, b.codes[i] as number) - (x[o + i] as number)) ** 2;
  return e;
};

/** the requantized weight of fake-quantized `w` [rows, cols] (cols a multiple of 32) */
export function requantizeToGguf(type: 'Q4_0' | 'Q4_1' | 'Q8_0', w: Float32Array, rows: number, cols: number, src: SourceQParams): GgufWeight {
  if (cols % QK !== 0 || w.length !== rows * cols) throw new RangeError(`${type}: a weight [${rows}, ${cols}] is not whole blocks of ${QK}`);
  const format = BLOCK_FORMATS[type];
  const index = qparamIndex(src, rows);
  const { qmin } = qRange(src.args.num_bits);
  const codes = new Int8Array(rows * cols);
  const qparams: GgufBlockQParams[] = [];
  for (let r = 0; r < rows; r++) {
    for (let c0 = 0; c0 < cols; c0 += QK) {
      const o = r * cols + c0;
      let best = format.quantize(w, o);
      const k = index?.(r, c0);
      const shared = k !== undefined && Array.from({ length: QK }, (_, i) => index!(r, c0 + i)).every((j) => j === k);
      if (shared) {
        const s = src.scale[k] as number;
        const z = src.args.symmetric ? 0 : ((src.zeroPoint?.[k] as number | undefined) ?? 0);
        const d = toHalf(s);
        const m = type === 'Q4_1' ? toHalf(f((qmin - z) * s)) : 0;
        const exact = quantizeWith(format, { d, m, scales: NO_SUBSCALES, mins: NO_SUBSCALES }, w, o);
        const finite = Number.isFinite(format.value(exact.qparams, 0, 0)) && Number.isFinite(format.value(exact.qparams, 0, 1));
        if (finite && sqErr(format, exact, w, o) <= sqErr(format, best, w, o)) best = exact;
      }
      qparams.push(best.qparams);
      codes.set(best.codes, o);
    }
  }
  return fromBlocks(type, rows, cols, qparams, codes);
}
