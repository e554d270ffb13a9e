// How AutoRound sees a weight: [rows, cols] laid out as [R, G, S] quantization groups (the layout the block
// graph quantizes in), and the learnable tensors and gradients of one target in that layout. Shared by the
// optimiser (algo/autoround.ts) and the block graph (graphs/autoround-kernel.ts).

/**
 * A weight [rows, cols] seen as [R, G, S]: R rows of scales, G groups per row, S columns per group, the last
 * group zero-padded (tensor: [1, 1, rows·cols]; channel: [rows, 1, cols]; group: [rows, ⌈cols/g⌉, g]).
 */
export interface QuantLayout {
  readonly rows: number;
  readonly cols: number;
  readonly R: number;
  readonly G: number;
  readonly S: number;
}

export function quantLayout(rows: number, cols: number, strategy: string, groupSize: number | null): QuantLayout {
  if (strategy === 'tensor') return { rows, cols, R: 1, G: 1, S: rows * cols };
  if (strategy === 'channel') return { rows, cols, R: rows, G: 1, S: cols };
  if (strategy === 'group' && groupSize !== null && groupSize > 0) {
    const G = Math.ceil(cols / groupSize);
    return { rows, cols, R: rows, G, S: G === 1 ? cols : groupSize };
  }
  throw new Error(`autoround: weight strategy "${strategy}" (group_size ${groupSize}) has no layout; expected tensor, channel or group with a positive group_size`);
}

/** elements between consecutive rows of the grouped array (the padded width; cols for tensor) */
export const rowStride = (l: QuantLayout): number => (l.R === l.rows ? l.G * l.S : l.cols);

/** w [rows, cols] → grouped [R, G, S], zero-padded */
export function toGroups(w: Float32Array, l: QuantLayout): Float32Array {
  const stride = rowStride(l);
  if (stride === l.cols) return w;
  const out = new Float32Array(l.R * l.G * l.S);
  for (let r = 0; r < l.rows; r++) out.set(w.subarray(r * l.cols, (r + 1) * l.cols), r * stride);
  return out;
}

/** the learnable tensors of one target, grouped [R, G, S] and [R, G] */
export interface TargetParams {
  v: Float32Array;
  minScale: Float32Array;
  maxScale: Float32Array;
}

/** dL/dV of one target, and dL/d factors when the kernel differentiates them */
export interface TargetGrads {
  v: Float32Array;
  minScale?: Float32Array;
  maxScale?: Float32Array;
}
