// The context a vector-Jacobian rule emits its nodes through: typed constants, static-or-runtime shapes, and
// `reduceTo`, which sums a gradient over the axes its forward input was broadcast along.

import type { AttrInput, Graph, Value } from '../graph.js';
import { ONNX_DTYPE, type AttrValue, type NodeDef, type OnnxDType } from '../proto.js';
import { isStatic, type Facts, type SymDim } from '../shape-dims.js';
import { ReasonedError, type OrtReason } from '../../diag/failure.js';

export class AutodiffError extends ReasonedError<OrtReason> {}

export interface RuleArgs {
  readonly node: NodeDef;
  /** forward inputs (undefined for omitted optional inputs), typed from static inference */
  readonly x: readonly (Value | undefined)[];
  readonly y: readonly Value[];
  /** upstream gradient of each output; undefined where no gradient reaches it */
  readonly gy: readonly (Value | undefined)[];
  /** which inputs need a gradient */
  readonly needs: readonly boolean[];
}

export interface VjpRule {
  /** input slots that can carry a gradient; every slot when absent */
  readonly diff?: readonly number[];
  vjp(b: Backward, a: RuleArgs): readonly (Value | undefined)[];
}

function scalarBytes(x: number, dtype: OnnxDType): Uint8Array {
  return new Uint8Array(dtype === 'float64' ? Float64Array.of(x).buffer : Float32Array.of(x).buffer);
}

export class Backward {
  readonly g: Graph;
  readonly facts: Facts;
  readonly #consts = new Map<string, Value>();

  constructor(g: Graph, facts: Facts) {
    this.g = g;
    this.facts = facts;
  }

  /** a forward Value by name, typed from static inference */
  value(name: string): Value {
    return { name, dtype: this.facts.get(name)?.dtype ?? 'float32' };
  }

  shape(v: Value | undefined): readonly SymDim[] | undefined {
    return v ? this.facts.get(v.name)?.shape : undefined;
  }

  /** the constant contents of a small forward tensor, if known */
  constValue(v: Value | undefined): readonly SymDim[] | undefined {
    return v ? this.facts.get(v.name)?.value : undefined;
  }

  rank(v: Value, op: string): number {
    const s = this.shape(v);
    if (!s) {
      throw new AutodiffError(
        'autodiff-unknown-rank',
        `${op}: the rank of "${v.name}" is unknown; expected a statically known rank (declare graph inputs with shapes)`,
      );
    }
    return s.length;
  }

  op(type: string, inputs: readonly (Value | undefined)[], dtype: OnnxDType, attrs: Record<string, AttrInput> = {}): Value {
    return this.g.op(type, inputs, attrs, { dtype });
  }

  ints(values: readonly number[]): Value {
    return this.g.ints(values);
  }

  /** a scalar constant of a float dtype */
  scalar(x: number, dtype: OnnxDType): Value {
    if (dtype === 'float32') return this.g.scalar(x);
    const key = `${dtype}:${x}`;
    let v = this.#consts.get(key);
    if (!v) {
      v = dtype === 'float64'
        ? this.g.constant({ dtype: 'float64', dims: [], data: Float64Array.of(x) }, 'c')
        : this.op('Cast', [this.g.scalar(x)], dtype, { to: ONNX_DTYPE[dtype] });
      this.#consts.set(key, v);
    }
    return v;
  }

  /** the shape of `v` as an int64 vector: a constant when static, else a Shape node */
  shapeOf(v: Value): Value {
    const s = this.shape(v);
    return isStatic(s) ? this.ints(s) : this.op('Shape', [v], 'int64');
  }

  /** a tensor of `v`'s shape filled with `x` */
  filledLike(v: Value, x: number, dtype: OnnxDType = v.dtype): Value {
    const direct = dtype === 'float64' ? 'float64' : 'float32';
    const tensor: AttrValue = { kind: 'tensor', value: { name: '', dtype: direct, dims: [1], raw: scalarBytes(x, direct) } };
    const out = this.op('ConstantOfShape', [this.shapeOf(v)], direct, { value: tensor });
    return direct === dtype ? out : this.op('Cast', [out], dtype, { to: ONNX_DTYPE[dtype] });
  }

  neg(v: Value): Value { return this.op('Neg', [v], v.dtype); }
  add(a: Value, b: Value): Value { return this.op('Add', [a, b], a.dtype); }
  sub(a: Value, b: Value): Value { return this.op('Sub', [a, b], a.dtype); }
  mul(a: Value, b: Value): Value { return this.op('Mul', [a, b], a.dtype); }
  div(a: Value, b: Value): Value { return this.op('Div', [a, b], a.dtype); }
  /** Where(cond, v, 0) or, with `flip`, Where(cond, 0, v) */
  select(cond: Value, v: Value, flip = false): Value {
    const zero = this.scalar(0, v.dtype);
    return this.op('Where', flip ? [cond, zero, v] : [cond, v, zero], v.dtype);
  }
  /**
   * Σ of `list` as a chain of Adds, not one variadic Sum: the WebGPU provider has no Sum kernel (its nodes
   * would run on the CPU between GPU nodes). Same left-to-right order as the CPU Sum, so the same bits.
   */
  sum(list: readonly Value[]): Value {
    return list.reduce((acc, v) => this.add(acc, v));
  }
  /** sign(v) ∈ {−1, 0, 1} from two comparisons: the WebGPU provider has no Sign kernel */
  sign(v: Value): Value {
    const zero = this.scalar(0, v.dtype);
    return this.sub(this.castTo(this.op('Greater', [v, zero], 'bool'), v.dtype), this.castTo(this.op('Less', [v, zero], 'bool'), v.dtype));
  }
  castTo(v: Value, dtype: OnnxDType): Value {
    return v.dtype === dtype ? v : this.op('Cast', [v], dtype, { to: ONNX_DTYPE[dtype] });
  }
  reshapeLike(v: Value, like: Value): Value {
    return this.op('Reshape', [v, this.shapeOf(like)], v.dtype);
  }

  /**
   * Sum `grad` (whose static shape is `gradShape`) down to the shape of the forward Value `target`, i.e. over
   * the leading axes `target` lacks and the axes where `target` has size 1 but the gradient does not. Static
   * when every axis is decidable from the inferred shapes; otherwise the axes are found at run time.
   */
  reduceTo(grad: Value, gradShape: readonly SymDim[] | undefined, target: Value): Value {
    const ts = this.shape(target);
    if (!gradShape || !ts || ts.length > gradShape.length) return this.#reduceAtRunTime(grad, target);
    const lead = gradShape.length - ts.length;
    const inner: number[] = [];
    for (let i = 0; i < ts.length; i++) {
      const t = ts[i] ?? null;
      const y = gradShape[lead + i] ?? null;
      if (t === 1) {
        if (y !== 1) inner.push(lead + i);
      } else if (typeof t !== 'number' && (t === null || t !== y)) {
        return this.#reduceAtRunTime(grad, target);
      }
    }
    const leadAxes = Array.from({ length: lead }, (_, i) => i);
    if (inner.length === 0 && lead === 0) return grad;
    if (inner.length === 0) return this.op('ReduceSum', [grad, this.ints(leadAxes)], grad.dtype, { keepdims: 0 });
    const r = this.op('ReduceSum', [grad, this.ints([...leadAxes, ...inner])], grad.dtype, { keepdims: 1 });
    return lead === 0 ? r : this.op('Squeeze', [r, this.ints(leadAxes)], grad.dtype);
  }

  #reduceAtRunTime(grad: Value, target: Value): Value {
    const gs = this.op('Shape', [grad], 'int64');
    const ts = this.op('Shape', [target], 'int64');
    const size = (s: Value): Value => this.op('Size', [s], 'int64');
    const missing = this.op('Unsqueeze', [this.op('Sub', [size(gs), size(ts)], 'int64'), this.ints([0])], 'int64');
    const ones: AttrValue = { kind: 'tensor', value: { name: '', dtype: 'int64', dims: [1], raw: new Uint8Array(BigInt64Array.of(1n).buffer) } };
    const padded = this.op('Concat', [this.op('ConstantOfShape', [missing], 'int64', { value: ones }), ts], 'int64', { axis: 0 });
    const differs = this.op('Not', [this.op('Equal', [padded, gs], 'bool')], 'bool');
    const axes = this.op('Reshape', [this.op('NonZero', [differs], 'int64'), this.ints([-1])], 'int64');
    const summed = this.op('ReduceSum', [grad, axes], grad.dtype, { keepdims: 1, noop_with_empty_axes: 1 });
    return this.op('Reshape', [summed, ts], grad.dtype);
  }
}
