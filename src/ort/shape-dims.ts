// The vocabulary of static shape facts: symbolic dims, what is known of a Value (dtype, shape, small
// constant contents), numpy broadcasting, Reshape's and Slice's size rules, and the decoding of small
// constant tensors. shape-infer.ts walks a graph with these; the autodiff rules use them to size gradients.

import { type OnnxDType, type TensorDef } from './proto.js';

/** a fixed size, a symbolic size (same name = same size), or unknown */
export type SymDim = number | string | null;

export interface ValueFacts {
  readonly dtype?: OnnxDType;
  /** undefined when even the rank is unknown */
  readonly shape?: readonly SymDim[];
  /** element values of small 0-D/1-D tensors (shape vectors, axes, scalar exponents) */
  readonly value?: readonly SymDim[];
}

export type Facts = Map<string, ValueFacts>;

const FLOATS: ReadonlySet<OnnxDType> = new Set(['float32', 'float64', 'float16', 'bfloat16']);
export const isFloat = (t: OnnxDType | undefined): boolean => t !== undefined && FLOATS.has(t);
export const isStatic = (s: readonly SymDim[] | undefined): s is readonly number[] =>
  s !== undefined && s.every((d) => typeof d === 'number');


/** numpy broadcasting of one dim pair; null where it cannot be decided statically */
export function broadcastDim(a: SymDim, b: SymDim): SymDim {
  if (a === 1) return b;
  if (b === 1 || a === b) return a;
  if (typeof a === 'number' && typeof b !== 'number') return a;
  if (typeof b === 'number' && typeof a !== 'number') return b;
  return null;
}

export function broadcastShapes(shapes: readonly (readonly SymDim[] | undefined)[]): SymDim[] | undefined {
  if (shapes.some((s) => s === undefined)) return undefined;
  const rank = Math.max(0, ...shapes.map((s) => s!.length));
  const out: SymDim[] = [];
  for (let i = 0; i < rank; i++) {
    let d: SymDim = 1;
    for (const s of shapes as (readonly SymDim[])[]) d = broadcastDim(d, s[i - rank + s.length] ?? 1);
    out.push(d);
  }
  return out;
}

export function decodeTensor(t: TensorDef): ValueFacts {
  const n = t.dims.reduce((a, b) => a * b, 1);
  let value: SymDim[] | undefined;
  if (t.raw && n <= 64 && t.dims.length <= 1) {
    const raw = t.raw.slice();
    const view = new DataView(raw.buffer);
    const read: Partial<Record<OnnxDType, (i: number) => number>> = {
      int64: (i) => Number(view.getBigInt64(i * 8, true)),
      int32: (i) => view.getInt32(i * 4, true),
      float32: (i) => view.getFloat32(i * 4, true),
      float64: (i) => view.getFloat64(i * 8, true),
    };
    const r = read[t.dtype];
    if (r && raw.byteLength >= n * (t.dtype === 'int32' || t.dtype === 'float32' ? 4 : 8)) value = Array.from({ length: n }, (_, i) => r(i));
  }
  return { dtype: t.dtype, shape: [...t.dims], ...(value ? { value } : {}) };
}

export const norm = (axis: number, rank: number): number => (axis < 0 ? axis + rank : axis);
export const numeric = (v: readonly SymDim[] | undefined): v is readonly number[] => v !== undefined && v.every((d) => typeof d === 'number');
export const product = (dims: readonly SymDim[]): SymDim =>
  dims.every((d) => typeof d === 'number') ? (dims as number[]).reduce((a, b) => a * b, 1) : null;

/** the size of a `-1` reshape entry, cancelling symbolic factors when it can */
export function inferredDim(input: readonly SymDim[], others: readonly SymDim[]): SymDim {
  if (input.includes(null) || others.includes(null)) return null;
  let num = 1;
  let den = 1;
  const syms: string[] = [];
  for (const d of input) typeof d === 'number' ? (num *= d) : syms.push(d as string);
  for (const d of others) {
    if (typeof d === 'number') den *= d;
    else {
      const k = syms.indexOf(d as string);
      if (k < 0) return null;
      syms.splice(k, 1);
    }
  }
  if (syms.length === 0) return den > 0 && num % den === 0 ? num / den : null;
  return syms.length === 1 && num === den ? (syms[0] as string) : null;
}

export function reshapeShape(x: readonly SymDim[] | undefined, target: readonly SymDim[], allowZero: boolean): SymDim[] {
  const out = target.map((d, i) => (d === 0 && !allowZero ? (x?.[i] ?? null) : d));
  const k = out.indexOf(-1);
  if (k >= 0) out[k] = x ? inferredDim(x, out.filter((_, i) => i !== k)) : null;
  return out;
}

/** [start, length] of a slice along a dim of size `d`, or null for an unknown length */
export function sliceRange(d: SymDim, start: number, end: number, step: number): [number, number] | null {
  if (typeof d !== 'number') return null;
  const clamp = (v: number, lo: number, hi: number): number => Math.min(Math.max(v < 0 ? v + d : v, lo), hi);
  if (step > 0) {
    const s = clamp(start, 0, d);
    return [s, Math.max(0, Math.ceil((clamp(end, 0, d) - s) / step))];
  }
  const s = clamp(start, 0, d - 1);
  const e = end < -d ? -1 : clamp(end, -1, d - 1);
  return [s, Math.max(0, Math.ceil((s - e) / -step))];
}

export function sumDims(sizes: readonly SymDim[]): SymDim {
  return sizes.every((d) => typeof d === 'number') ? (sizes as number[]).reduce((a, b) => a + b, 0) : null;
}
