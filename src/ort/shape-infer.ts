// Static facts about the Values of a built Graph: element type, shape with symbolic dims, and the contents of
// small integer tensors (shape vectors, axes) when they can be known before running. A forward pass over the
// node list in the spirit of ONNX shape inference with data propagation, limited to the ops quantforge's
// graphs use; anything it cannot decide is left unknown (`null` dim, `undefined` shape), never guessed.

import type { Graph } from './graph.js';
import { ONNX_DTYPE, type NodeDef, type OnnxDType } from './proto.js';
import { broadcastShapes, decodeTensor, inferredDim, isStatic, norm, numeric, product, reshapeShape, sliceRange, sumDims, type Facts, type SymDim, type ValueFacts } from './shape-dims.js';

const DTYPE_BY_CODE = new Map<number, OnnxDType>(Object.entries(ONNX_DTYPE).map(([k, v]) => [v, k as OnnxDType]));
const BOOL_OUT = new Set(['Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'Not', 'And', 'Or', 'Xor', 'IsNaN', 'IsInf']);
const INT64_OUT = new Set(['Shape', 'Size', 'NonZero', 'ArgMax', 'ArgMin']);
const SAME_SHAPE = new Set([
  'Neg', 'Sqrt', 'Reciprocal', 'Exp', 'Log', 'Sigmoid', 'Tanh', 'Relu', 'Abs', 'Sign', 'Round', 'Floor', 'Ceil',
  'Identity', 'Cast', 'CastLike', 'Softmax', 'LogSoftmax', 'Clip', 'Not', 'IsNaN', 'IsInf', 'Erf', 'CumSum', 'Trilu',
  'ScatterND', 'ScatterElements', 'Dropout',
]);
const BROADCAST = new Set([
  'Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Sum', 'Mean', 'Where', 'Equal', 'Less', 'Greater', 'LessOrEqual',
  'GreaterOrEqual', 'And', 'Or', 'Xor', 'Mod', 'PRelu',
]);

class Inferrer {
  readonly facts: Facts = new Map();

  get(name: string | undefined): ValueFacts {
    return name ? (this.facts.get(name) ?? {}) : {};
  }

  ints(n: NodeDef, index: number, attr: string): readonly SymDim[] | undefined {
    const a = n.attrs[attr];
    if (a?.kind === 'ints') return a.value;
    return this.get(n.inputs[index]).value;
  }

  attrInt(n: NodeDef, name: string, fallback: number): number {
    const a = n.attrs[name];
    return a?.kind === 'int' ? a.value : fallback;
  }

  dtypeOf(n: NodeDef): OnnxDType | undefined {
    const first = this.get(n.inputs[0]).dtype;
    if (BOOL_OUT.has(n.opType)) return 'bool';
    if (INT64_OUT.has(n.opType)) return 'int64';
    if (n.opType === 'Cast') {
      const to = n.attrs.to;
      return to?.kind === 'int' ? DTYPE_BY_CODE.get(to.value) : undefined;
    }
    if (n.opType === 'CastLike' || n.opType === 'Where') return this.get(n.inputs[1]).dtype;
    if (n.opType === 'ConstantOfShape' || n.opType === 'Constant') {
      const v = n.attrs.value;
      return v?.kind === 'tensor' ? v.value.dtype : 'float32';
    }
    return first;
  }

  shapeOf(n: NodeDef): (readonly SymDim[] | undefined)[] {
    const x = this.get(n.inputs[0]);
    const xs = x.shape;
    const op = n.opType;
    if (SAME_SHAPE.has(op)) return [xs];
    if (BROADCAST.has(op)) return [broadcastShapes(n.inputs.filter((i) => i !== '').map((i) => this.get(i).shape))];
    switch (op) {
      case 'MatMul': {
        const bs = this.get(n.inputs[1]).shape;
        if (!xs || !bs || xs.length === 0 || bs.length === 0) return [undefined];
        const a = xs.length === 1 ? [1, ...xs] : xs;
        const b = bs.length === 1 ? [...bs, 1] : bs;
        const batch = broadcastShapes([a.slice(0, -2), b.slice(0, -2)]) ?? [];
        return [[...batch, ...(xs.length === 1 ? [] : [a[a.length - 2] ?? null]), ...(bs.length === 1 ? [] : [b[b.length - 1] ?? null])]];
      }
      case 'Gemm': {
        const bs = this.get(n.inputs[1]).shape;
        if (!xs || !bs) return [undefined];
        return [[xs[this.attrInt(n, 'transA', 0) ? 1 : 0] ?? null, bs[this.attrInt(n, 'transB', 0) ? 0 : 1] ?? null]];
      }
      case 'ReduceSum': case 'ReduceMean': case 'ReduceMax': case 'ReduceMin': case 'ReduceProd': case 'ReduceL2': {
        if (!xs) return [undefined];
        const axes = this.ints(n, 1, 'axes');
        const hasAxesInput = (n.inputs[1] ?? '') !== '' || n.attrs.axes !== undefined;
        const keep = this.attrInt(n, 'keepdims', 1) === 1;
        if (hasAxesInput && !numeric(axes)) return [keep ? xs.map(() => null) : undefined];
        const all = !hasAxesInput || (axes!.length === 0 && this.attrInt(n, 'noop_with_empty_axes', 0) === 0);
        if (hasAxesInput && axes!.length === 0 && !all) return [xs];
        const set = new Set(all ? xs.map((_, i) => i) : (axes as number[]).map((a) => norm(a, xs.length)));
        return [keep ? xs.map((d, i) => (set.has(i) ? 1 : d)) : xs.filter((_, i) => !set.has(i))];
      }
      case 'Transpose': {
        if (!xs) return [undefined];
        const p = n.attrs.perm;
        const perm = p?.kind === 'ints' ? p.value : xs.map((_, i) => xs.length - 1 - i);
        return [perm.map((i) => xs[i] ?? null)];
      }
      case 'Reshape': {
        const t = this.get(n.inputs[1]);
        if (t.value) return [reshapeShape(xs, t.value, this.attrInt(n, 'allowzero', 0) === 1)];
        const len = t.shape?.[0];
        return [typeof len === 'number' ? Array<SymDim>(len).fill(null) : undefined];
      }
      case 'Flatten': {
        if (!xs) return [undefined];
        const k = norm(this.attrInt(n, 'axis', 1), xs.length);
        return [[product(xs.slice(0, k)), product(xs.slice(k))]];
      }
      case 'Unsqueeze': case 'Squeeze': {
        const axes = this.ints(n, 1, 'axes');
        if (!xs) return [undefined];
        if (op === 'Squeeze') {
          if (!axes) return [isStatic(xs) ? xs.filter((d) => d !== 1) : undefined];
          if (!numeric(axes)) return [undefined];
          const set = new Set(axes.map((a) => norm(a, xs.length)));
          return [xs.filter((_, i) => !set.has(i))];
        }
        if (!numeric(axes)) return [undefined];
        const rank = xs.length + axes.length;
        const set = new Set(axes.map((a) => norm(a, rank)));
        const rest = [...xs];
        return [Array.from({ length: rank }, (_, i) => (set.has(i) ? 1 : (rest.shift() ?? null)))];
      }
      case 'Expand': {
        const t = this.get(n.inputs[1]);
        if (t.value) return [broadcastShapes([xs, t.value])];
        return [undefined];
      }
      case 'Slice': {
        if (!xs) return [undefined];
        const [starts, ends] = [this.get(n.inputs[1]).value, this.get(n.inputs[2]).value];
        const axes = this.get(n.inputs[3]).value ?? starts?.map((_, i) => i);
        const steps = this.get(n.inputs[4]).value ?? starts?.map(() => 1);
        if (!numeric(starts) || !numeric(ends) || !numeric(axes) || !numeric(steps)) return [xs.map(() => null)];
        const out = [...xs];
        axes.forEach((a, i) => {
          const k = norm(a, xs.length);
          const r = sliceRange(xs[k] ?? null, starts[i]!, ends[i]!, steps[i]!);
          const full = starts[i] === 0 && ends[i]! >= 2 ** 31 - 1 && steps[i] === 1;
          out[k] = full ? (xs[k] ?? null) : r ? r[1] : null;
        });
        return [out];
      }
      case 'Concat': {
        const shapes = n.inputs.map((i) => this.get(i).shape);
        if (shapes.some((s) => !s)) return [undefined];
        const first = shapes[0]!;
        const k = norm(this.attrInt(n, 'axis', 0), first.length);
        const sizes = shapes.map((s) => s![k] ?? null);
        return [first.map((d, i) => (i === k ? sumDims(sizes) : d))];
      }
      case 'Split': {
        if (!xs) return n.outputs.map(() => undefined);
        const k = norm(this.attrInt(n, 'axis', 0), xs.length);
        const sizes = this.get(n.inputs[1]).value;
        const d = xs[k] ?? null;
        const count = n.outputs.length;
        return n.outputs.map((_, j) => {
          const size = sizes ? (sizes[j] ?? null) : typeof d === 'number' && d % count === 0 ? d / count : null;
          return xs.map((x, i) => (i === k ? size : x));
        });
      }
      case 'Gather': {
        const idx = this.get(n.inputs[1]).shape;
        if (!xs || !idx) return [undefined];
        const k = norm(this.attrInt(n, 'axis', 0), xs.length);
        return [[...xs.slice(0, k), ...idx, ...xs.slice(k + 1)]];
      }
      case 'Shape': return [xs ? [this.shapeValue(n, xs).length] : [null]];
      case 'Size': return [[]];
      case 'ConstantOfShape': return [this.get(n.inputs[0]).value];
      case 'Constant': {
        const v = n.attrs.value;
        return [v?.kind === 'tensor' ? v.value.dims : undefined];
      }
      case 'Pad': {
        const pads = this.get(n.inputs[1]).value;
        if (!xs || !numeric(pads)) return [xs?.map(() => null)];
        const axes = (this.get(n.inputs[3]).value ?? xs.map((_, i) => i)).map((a) => norm(a as number, xs.length));
        const out = [...xs];
        axes.forEach((a, i) => {
          const add = pads[i]! + pads[i + axes.length]!;
          const d = xs[a] ?? null;
          out[a] = add === 0 ? d : typeof d === 'number' ? d + add : null;
        });
        return [out];
      }
      case 'NonZero': return [[xs ? xs.length : null, null]];
      default: return n.outputs.map(() => undefined);
    }
  }

  shapeValue(n: NodeDef, xs: readonly SymDim[]): SymDim[] {
    const r = xs.length;
    const clamp = (v: number): number => Math.min(Math.max(v < 0 ? v + r : v, 0), r);
    return xs.slice(clamp(this.attrInt(n, 'start', 0)), clamp(this.attrInt(n, 'end', r)));
  }

  valueOf(n: NodeDef): readonly SymDim[] | undefined {
    const x = this.get(n.inputs[0]);
    switch (n.opType) {
      case 'Shape': return x.shape ? this.shapeValue(n, x.shape) : undefined;
      case 'Size': return x.shape ? [product(x.shape)] : undefined;
      case 'Identity': case 'Cast': case 'Unsqueeze': case 'Squeeze': case 'Reshape': return x.value;
      case 'Concat': {
        const parts = n.inputs.map((i) => this.get(i).value);
        return parts.every((p) => p !== undefined) ? parts.flat() : undefined;
      }
      case 'Gather': {
        const idx = this.get(n.inputs[1]).value;
        if (!x.value || !numeric(idx) || (x.shape?.length ?? 0) !== 1) return undefined;
        return idx.map((i) => x.value![i < 0 ? i + x.value!.length : i] ?? null);
      }
      case 'Slice': {
        const vals = [1, 2, 3, 4].map((i) => this.get(n.inputs[i]).value);
        const [s, e] = vals;
        const step = vals[3]?.[0] ?? 1;
        if (!x.value || !numeric(s) || !numeric(e) || typeof step !== 'number' || s.length !== 1) return undefined;
        const r = sliceRange(x.value.length, s[0]!, e[0]!, step);
        return r ? Array.from({ length: r[1] }, (_, i) => x.value![r[0] + i * step] ?? null) : undefined;
      }
      case 'Add': case 'Sub': case 'Mul': case 'Div': {
        const y = this.get(n.inputs[1]).value;
        if (!numeric(x.value) || !numeric(y)) return undefined;
        const len = Math.max(x.value.length, y.length);
        const f = { Add: (a: number, b: number) => a + b, Sub: (a: number, b: number) => a - b, Mul: (a: number, b: number) => a * b,
          Div: (a: number, b: number) => Math.trunc(a / b) }[n.opType];
        return Array.from({ length: len }, (_, i) => f(x.value![x.value!.length === 1 ? 0 : i] as number, y[y.length === 1 ? 0 : i]!));
      }
      case 'Constant': {
        const v = n.attrs.value;
        return v?.kind === 'tensor' ? decodeTensor(v.value).value : undefined;
      }
      default: return undefined;
    }
  }

  run(g: Graph): Facts {
    for (const i of g.inputs) this.facts.set(i.name, { dtype: i.dtype, ...(i.shape ? { shape: i.shape.map((d) => d) } : {}) });
    for (const t of g.initializers) this.facts.set(t.name, decodeTensor(t));
    for (const n of g.nodes) {
      const dtype = this.dtypeOf(n);
      const shapes = this.shapeOf(n);
      n.outputs.forEach((name, k) => {
        if (name === '') return;
        const shape = shapes[k];
        const value = k === 0 ? this.valueOf(n) : undefined;
        this.facts.set(name, { ...(dtype ? { dtype } : {}), ...(shape ? { shape } : {}), ...(value ? { value } : {}) });
      });
    }
    return this.facts;
  }
}

/** dtype, shape and small constant contents of every Value of `g` that static inference can decide */
export function inferFacts(g: Graph): Facts {
  return new Inferrer().run(g);
}
