// Finite-difference checking for gradient graphs: build a tiny graph, differentiate it with `gradients`, and
// compare against central differences of L = Σ y·r (r a random upstream gradient fed as the seed).

import { gradients } from '../../src/ort/autodiff.js';
import { Graph, type Dim, type Value } from '../../src/ort/graph.js';
import type { Runtime } from '../../src/ort/session.js';
import type { Tensor } from '../../src/tensor.js';
import { seededRandom } from '../../src/random.js';

export type Rng = () => number;

/** mulberry32, the project's deterministic uniform generator on [0, 1) */
export const rng: (seed: number) => Rng = seededRandom;

export interface InputSpec {
  /** declared shape (may be symbolic) */
  shape: readonly Dim[];
  /** the dims fed; defaults to `shape` when it is all numbers */
  dims?: readonly number[];
  data?: readonly number[];
  /** range of the random values (default [-1, 1]) */
  range?: readonly [number, number];
  /** differentiate w.r.t. this input (default true) */
  wrt?: boolean;
  dtype?: 'float64' | 'float32' | 'int64' | 'bool';
}

export interface GradCase {
  inputs: Record<string, InputSpec>;
  build(g: Graph, x: Record<string, Value>): Value;
}

export interface GradCheck {
  /** max over checked coordinates of |analytic − numeric| / max |numeric|, per wrt input */
  relErr: Record<string, number>;
  analytic: Record<string, Float64Array>;
  numeric: Record<string, Map<number, number>>;
  /** the seed r (rounded to y's dtype when fed) */
  seed: Float64Array;
  feeds: Record<string, Tensor>;
  graph: Graph;
}

let counter = 0;

function feedOf(spec: InputSpec, r: Rng): Tensor {
  const dims = spec.dims ?? (spec.shape as number[]);
  const n = dims.reduce((a, b) => a * b, 1);
  const [lo, hi] = spec.range ?? [-1, 1];
  const values = spec.data ?? Array.from({ length: n }, () => lo + (hi - lo) * r());
  if (spec.dtype === 'int64') return { dtype: 'int64', dims, data: BigInt64Array.from(values.map((v) => BigInt(v))) };
  if (spec.dtype === 'bool') return { dtype: 'bool', dims, data: Uint8Array.from(values) };
  if (spec.dtype === 'float32') return { dtype: 'float32', dims, data: Float32Array.from(values) };
  return { dtype: 'float64', dims, data: Float64Array.from(values) };
}

function declare(g: Graph, inputs: Record<string, InputSpec>): Record<string, Value> {
  const x: Record<string, Value> = {};
  for (const [name, spec] of Object.entries(inputs)) x[name] = g.input(name, spec.dtype ?? 'float64', spec.shape);
  return x;
}

export interface CheckOptions {
  /** finite-difference step */
  h?: number;
  /** at most this many coordinates per input (random subset); all when absent */
  coords?: number;
  seed?: number;
  /** differentiate `y` with the default seed (ones) instead of feeding a random one */
  unitSeed?: boolean;
}

export async function checkGradients(rt: Runtime, c: GradCase, options: CheckOptions = {}): Promise<GradCheck> {
  const r = rng(options.seed ?? 7);
  const h = options.h ?? 1e-6;
  const feeds: Record<string, Tensor> = {};
  for (const [name, spec] of Object.entries(c.inputs)) feeds[name] = feedOf(spec, r);
  const isFloat = (k: string): boolean => ['float64', 'float32'].includes(c.inputs[k]!.dtype ?? 'float64');
  const wrt = Object.keys(c.inputs).filter((k) => (c.inputs[k]!.wrt ?? true) && isFloat(k));

  const fg = new Graph('fwd');
  fg.output(c.build(fg, declare(fg, c.inputs)), 'y');
  const fk = await rt.kernel(`fwd-${counter++}`, () => fg);
  const yOut = (await fk.run(feeds)).y!;
  const yDims = yOut.dims;
  const seed = Float64Array.from({ length: yDims.reduce((a, b) => a * b, 1) }, () => (options.unitSeed ? 1 : 2 * r() - 1));
  const yType = yOut.dtype === 'float32' ? 'float32' : 'float64';
  feeds.seed = { dtype: yType, dims: yDims, data: yType === 'float32' ? Float32Array.from(seed) : seed };

  const g = new Graph('grad');
  const x = declare(g, c.inputs);
  const y = c.build(g, x);
  const s = options.unitSeed ? undefined : g.input('seed', yType, yDims);
  const grads = gradients(g, y, wrt.map((k) => x[k]!), s ? { seed: s } : {});
  if (!s) delete feeds.seed;
  g.output(y, 'y');
  grads.forEach((v, i) => g.output(v, `grad_${wrt[i]}`));
  const k = await rt.kernel(`grad-${counter++}`, () => g);
  const out = await k.run(feeds);

  const loss = async (f: Record<string, Tensor>): Promise<number> => {
    const yv = (await k.run(f, ['y'])).y!.data as Float64Array | Float32Array;
    const r32 = feeds.seed?.data as Float64Array | Float32Array | undefined;
    let acc = 0;
    for (let i = 0; i < yv.length; i++) acc += yv[i]! * (r32 ? r32[i]! : 1);
    return acc;
  };
  const result: GradCheck = { relErr: {}, analytic: {}, numeric: {}, seed, feeds, graph: g };
  for (const name of wrt) {
    const a = Float64Array.from(out[`grad_${name}`]!.data as Float64Array | Float32Array);
    const base = feeds[name]!.data as Float64Array | Float32Array;
    const copy = (): Float64Array | Float32Array => (base instanceof Float32Array ? Float32Array.from(base) : Float64Array.from(base));
    let idx = Array.from({ length: base.length }, (_, i) => i);
    if (options.coords !== undefined && idx.length > options.coords) {
      idx = idx.sort(() => r() - 0.5).slice(0, options.coords);
    }
    const num = new Map<number, number>();
    for (const i of idx) {
      const plus = copy();
      const minus = copy();
      plus[i] = base[i]! + h;
      minus[i] = base[i]! - h;
      const lp = await loss({ ...feeds, [name]: { ...feeds[name]!, data: plus } });
      const lm = await loss({ ...feeds, [name]: { ...feeds[name]!, data: minus } });
      // the step actually taken (float32 inputs round x ± h)
      num.set(i, (lp - lm) / (plus[i]! - minus[i]!));
    }
    let diff = 0;
    let scale = 0;
    for (const [i, n] of num) {
      diff = Math.max(diff, Math.abs(a[i]! - n));
      scale = Math.max(scale, Math.abs(n));
    }
    result.relErr[name] = diff / Math.max(scale, 1e-12);
    result.analytic[name] = a;
    result.numeric[name] = num;
  }
  return result;
}

/** float64 scalar constant */
export function f64(g: Graph, x: number): Value {
  return g.constant({ dtype: 'float64', dims: [], data: Float64Array.of(x) }, 'k');
}
