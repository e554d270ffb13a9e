// A small typed builder for ONNX graphs. Kernels describe their math here in TypeScript; `build()` emits the
// protobuf bytes that onnxruntime loads. Weights are normally graph *inputs* (so one session serves every
// layer of a shape); `constant()` is for small tensors only.

import { bytesOf, type Tensor } from '../tensor.js';
import { encodeModel, ONNX_DTYPE, type AttrValue, type NodeDef, type OnnxDType, type TensorDef, type ValueInfoDef } from './proto.js';

export type Dim = number | string;

/** a named edge of the graph */
export interface Value {
  readonly name: string;
  readonly dtype: OnnxDType;
}

export type AttrInput = AttrValue | number | readonly number[] | string;

/** a float attribute (plain numbers are ints) */
export const float = (value: number): AttrValue => ({ kind: 'float', value });
export const floats = (value: readonly number[]): AttrValue => ({ kind: 'floats', value });

function toAttr(a: AttrInput): AttrValue {
  if (typeof a === 'number') return { kind: 'int', value: a };
  if (typeof a === 'string') return { kind: 'string', value: a };
  if (Array.isArray(a)) return { kind: 'ints', value: a as readonly number[] };
  return a as AttrValue;
}

export interface OpOptions {
  domain?: string;
  /** dtype of the outputs when it differs from the first input's */
  dtype?: OnnxDType;
}

export interface GraphOptions {
  opset?: number;
  /** extra metadata_props on the model */
  metadata?: Record<string, string>;
}

export class Graph {
  readonly name: string;
  readonly nodes: NodeDef[] = [];
  readonly inputs: ValueInfoDef[] = [];
  readonly outputs: ValueInfoDef[] = [];
  readonly initializers: TensorDef[] = [];
  readonly #opset: number;
  readonly #metadata: Record<string, string>;
  #counter = 0;
  #constants = new Map<string, Value>();
  #domains = new Set<string>();

  constructor(name: string, options: GraphOptions = {}) {
    this.name = name;
    this.#opset = options.opset ?? 21;
    this.#metadata = options.metadata ?? {};
  }

  fresh(hint: string): string {
    return `${hint}_${this.#counter++}`;
  }

  input(name: string, dtype: OnnxDType, shape: readonly Dim[]): Value {
    this.inputs.push({ name, dtype, shape });
    return { name, dtype };
  }

  /** mark `v` as a graph output, renaming it through Identity when `name` differs; no shape: rank unknown */
  output(v: Value, name: string = v.name, shape?: readonly Dim[]): Value {
    let out = v;
    if (name !== v.name) out = this.op('Identity', [v], {}, {}, name);
    this.outputs.push({ name, dtype: v.dtype, shape });
    return out;
  }

  /** an initializer holding `t` (small tensors only; big weights belong in inputs) */
  constant(t: Tensor, hint = 'const'): Value {
    const name = this.fresh(hint);
    const dtype = t.dtype as OnnxDType;
    this.initializers.push({ name, dtype, dims: t.dims, raw: bytesOf(t) });
    return { name, dtype };
  }

  /** an initializer given as a TensorDef (e.g. raw bytes, or data in an external file) */
  initializer(def: TensorDef): Value {
    this.initializers.push(def);
    return { name: def.name, dtype: def.dtype };
  }

  #memoConstant(key: string, make: () => Tensor): Value {
    const hit = this.#constants.get(key);
    if (hit) return hit;
    const v = this.constant(make(), 'c');
    this.#constants.set(key, v);
    return v;
  }

  /** a float32 scalar constant */
  scalar(x: number): Value {
    return this.#memoConstant(`f:${x}`, () => ({ dtype: 'float32', dims: [], data: Float32Array.of(x) }));
  }

  /** an int64 1-D constant (axes, shapes, starts) */
  ints(values: readonly number[]): Value {
    return this.#memoConstant(`i:${values.join(',')}`, () => ({
      dtype: 'int64',
      dims: [values.length],
      data: BigInt64Array.from(values.map((v) => BigInt(v))),
    }));
  }

  /** an int64 scalar constant */
  int(value: number): Value {
    return this.#memoConstant(`i0:${value}`, () => ({ dtype: 'int64', dims: [], data: BigInt64Array.of(BigInt(value)) }));
  }

  op(
    opType: string,
    inputs: readonly (Value | undefined)[],
    attrs: Record<string, AttrInput> = {},
    options: OpOptions = {},
    outputName?: string,
  ): Value {
    const [out] = this.opN(opType, inputs, 1, attrs, options, outputName ? [outputName] : undefined);
    return out as Value;
  }

  opN(
    opType: string,
    inputs: readonly (Value | undefined)[],
    count: number,
    attrs: Record<string, AttrInput> = {},
    options: OpOptions = {},
    outputNames?: readonly string[],
  ): Value[] {
    const domain = options.domain ?? '';
    if (domain !== '') this.#domains.add(domain);
    const dtype = options.dtype ?? inputs.find((i) => i !== undefined)?.dtype ?? 'float32';
    const outputs = Array.from({ length: count }, (_, k) => outputNames?.[k] ?? this.fresh(opType.toLowerCase()));
    const converted: Record<string, AttrValue> = {};
    for (const [k, a] of Object.entries(attrs)) converted[k] = toAttr(a);
    this.nodes.push({
      opType,
      domain,
      inputs: inputs.map((i) => i?.name ?? ''),
      outputs,
      attrs: converted,
      name: this.fresh(`n_${opType}`),
    });
    return outputs.map((name) => ({ name, dtype }));
  }

  // elementwise and linear-algebra shorthands
  add(a: Value, b: Value): Value { return this.op('Add', [a, b]); }
  sub(a: Value, b: Value): Value { return this.op('Sub', [a, b]); }
  mul(a: Value, b: Value): Value { return this.op('Mul', [a, b]); }
  div(a: Value, b: Value): Value { return this.op('Div', [a, b]); }
  matmul(a: Value, b: Value): Value { return this.op('MatMul', [a, b]); }
  transpose(a: Value, perm: readonly number[]): Value { return this.op('Transpose', [a], { perm }); }
  reshape(a: Value, shape: readonly number[]): Value { return this.op('Reshape', [a, this.ints(shape)]); }
  /** Cast to `to`; `saturate` 0 makes float8 overflow NaN instead of ±max (the op's default is 1) */
  cast(a: Value, to: OnnxDType, saturate?: 0 | 1): Value {
    return this.op('Cast', [a], { to: ONNX_DTYPE[to], ...(saturate === undefined ? {} : { saturate }) }, { dtype: to });
  }
  /**
   * Round half to even without a Round node (onnxruntime 1.30's WebGPU provider has none, so Round runs on
   * the CPU between GPU nodes): |x| = x·σ with σ = ±1 the sign of x (x < 0 ? −1 : 1), rounded as
   * (|x| + 1.5·2²³) − 1.5·2²³, the float32 store of the sum doing the rounding, then multiplied by σ again,
   * so −0.3 gives −0 as Round does. The same bits as Round for |x| < 2²² (every quantization grid) except −0
   * itself, which gives +0: callers add a zero point first, which turns −0 into +0 anyway. Taking |x| as x·σ
   * (not Abs) makes the reverse-mode gradient σ·σ = 1 everywhere, 0 included: the straight-through estimator
   * autodiff gives Round, bit for bit.
   */
  roundHalfEven(x: Value): Value {
    if (x.dtype !== 'float32') throw new Error(`roundHalfEven: float32 only, got ${x.dtype}`);
    const magic = this.scalar(1.5 * 2 ** 23);
    const negative = this.op('Less', [x, this.scalar(0)], {}, { dtype: 'bool' });
    const sign = this.op('Where', [negative, this.scalar(-1), this.scalar(1)], {}, { dtype: 'float32' });
    return this.mul(this.sub(this.add(this.mul(x, sign), magic), magic), sign);
  }
  reduceSum(a: Value, axes: readonly number[], keepdims = true): Value {
    return this.op('ReduceSum', [a, this.ints(axes)], { keepdims: keepdims ? 1 : 0 });
  }
  reduceMean(a: Value, axes: readonly number[], keepdims = true): Value {
    return this.op('ReduceMean', [a, this.ints(axes)], { keepdims: keepdims ? 1 : 0 });
  }
  reduceMax(a: Value, axes: readonly number[], keepdims = true): Value {
    return this.op('ReduceMax', [a, this.ints(axes)], { keepdims: keepdims ? 1 : 0 });
  }

  build(): Uint8Array {
    const opsets = [{ domain: '', version: this.#opset }];
    for (const d of [...this.#domains].sort()) opsets.push({ domain: d, version: 1 });
    return encodeModel({
      irVersion: this.#opset >= 23 ? 11 : 10,
      opsets,
      producer: 'quantforge',
      graphName: this.name,
      nodes: this.nodes,
      initializers: this.initializers,
      inputs: this.inputs,
      outputs: this.outputs,
      metadata: this.#metadata,
    });
  }
}
