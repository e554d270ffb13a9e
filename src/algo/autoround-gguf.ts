// AutoRound's final codes and block qparams of a GGUF-quantized weight (Q8_0, Q4_0, Q5_0, Q4_1) from its
// learned offsets V and min/max factors: the arithmetic of graphs/autoround-gguf.ts in JS, every step one
// float32 operation in the graph's order, so the blocks dequantize (ggml's dequantize_row_<type>) to the very
// weight the block graph trained and the evaluation scores. The result is a GgufWeight: the codes and
// float16 qparams the file stores, with no second rounding.

import { fromHalf, toHalf } from '../quant/ggml-rounding.js';
import { NO_SUBSCALES, type GgufBlockQParams } from '../quant/gguf-block.js';
import { fromBlocks, type GgufWeight } from '../quant/gguf-weight.js';
import type { MinMax } from '../quant/qparams.js';
import { roundHalfEven } from '../quant/round.js';
import type { QuantLayout, TargetParams } from './autoround-layout.js';

const f = Math.fround;
const QK = 32;

/** the 32-weight block types whose qparams the block graph computes in one pass (no K-quant sub-scale search) */
export type LearnedBlockType = 'Q8_0' | 'Q4_0' | 'Q5_0' | 'Q4_1';

export const isLearnedBlockType = (t: string): t is LearnedBlockType => t === 'Q8_0' || t === 'Q4_0' || t === 'Q5_0' || t === 'Q4_1';

/** the signed code range of a block type as the learned quantizer clips (stored codes add the offset) */
export function learnedCodeRange(type: LearnedBlockType): { qmin: number; qmax: number; offset: number } {
  if (type === 'Q8_0') return { qmin: -128, qmax: 127, offset: 0 };
  if (type === 'Q4_1') return { qmin: 0, qmax: 15, offset: 0 };
  const half = type === 'Q4_0' ? 8 : 16;
  return { qmin: -half, qmax: half - 1, offset: half };
}

/** the float16 bits of d (and Q4_1's m) for a block whose learned range is [lo, hi] */
function blockQParams(type: LearnedBlockType, lo: number, hi: number): GgufBlockQParams {
  let d: number;
  if (type === 'Q4_1') d = f(f(hi - lo) / 15);
  else if (type === 'Q8_0') d = f(Math.max(Math.abs(lo), Math.abs(hi)) / 127);
  else d = f((hi >= -lo ? hi : lo) / -learnedCodeRange(type).offset);
  return { d: toHalf(d), m: type === 'Q4_1' ? toHalf(lo) : 0, scales: NO_SUBSCALES, mins: NO_SUBSCALES };
}

/**
 * the weight w [rows, cols] (cols whole blocks of 32, layout [rows, cols/32, 32]) quantized at learned
 * parameters `p`; `range` is the observed per-block min and max (not widened)
 */
export function quantizeLearnedGguf(type: LearnedBlockType, w: Float32Array, l: QuantLayout, range: MinMax, p: TargetParams): GgufWeight {
  const { rows, cols } = l;
  if (cols % QK !== 0 || l.S !== QK || l.R !== rows || w.length !== rows * cols) {
    throw new RangeError(`autoround ${type}: a weight [${rows}, ${cols}] in groups [${l.R}, ${l.G}, ${l.S}] is not whole blocks of ${QK}`);
  }
  const { qmin, qmax, offset } = learnedCodeRange(type);
  const perRow = cols / QK;
  const qparams: GgufBlockQParams[] = [];
  const codes = new Int8Array(rows * cols);
  for (let k = 0; k < rows * perRow; k++) {
    const lo = f((range.min[k] as number) * (p.minScale[k] as number));
    const hi = f((range.max[k] as number) * (p.maxScale[k] as number));
    const qp = blockQParams(type, lo, hi);
    qparams.push(qp);
    const d = fromHalf(qp.d);
    const div = d === 0 ? 1 : d;
    const m = fromHalf(qp.m);
    // the block's weights are w[k·32 …] (rows are whole blocks), its offsets v[k·32 …] (no padding)
    for (let j = k * QK; j < (k + 1) * QK; j++) {
      const x = type === 'Q4_1' ? f((w[j] as number) - m) : (w[j] as number);
      const y = f(f(x / div) + (p.v[j] as number));
      const q = Math.min(Math.max(roundHalfEven(y), qmin), qmax);
      codes[j] = q + offset;
    }
  }
  return fromBlocks(type, rows, cols, qparams, codes);
}
