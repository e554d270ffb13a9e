// The in-memory tensor every layer of quantforge passes around: a dtype, a shape and a flat typed array
// in row-major order. float16 and bfloat16 keep their raw 16-bit patterns in a Uint16Array, float8e4m3fn its
// raw bytes in a Uint8Array (src/quant/fp8.ts encodes and decodes them).

export type DType =
  | 'float32'
  | 'float64'
  | 'float16'
  | 'bfloat16'
  | 'float8e4m3fn'
  | 'int64'
  | 'int32'
  | 'int16'
  | 'int8'
  | 'uint8'
  | 'bool';

export interface DataFor {
  float32: Float32Array;
  float64: Float64Array;
  float16: Uint16Array;
  bfloat16: Uint16Array;
  float8e4m3fn: Uint8Array;
  int64: BigInt64Array;
  int32: Int32Array;
  int16: Int16Array;
  int8: Int8Array;
  uint8: Uint8Array;
  bool: Uint8Array;
}

export interface Tensor<D extends DType = DType> {
  readonly dtype: D;
  readonly dims: readonly number[];
  readonly data: DataFor[D];
}

export const BYTES_PER_ELEMENT: Readonly<Record<DType, number>> = {
  float32: 4,
  float64: 8,
  float16: 2,
  bfloat16: 2,
  float8e4m3fn: 1,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

const CONSTRUCTORS = {
  float32: Float32Array,
  float64: Float64Array,
  float16: Uint16Array,
  bfloat16: Uint16Array,
  float8e4m3fn: Uint8Array,
  int64: BigInt64Array,
  int32: Int32Array,
  int16: Int16Array,
  int8: Int8Array,
  uint8: Uint8Array,
  bool: Uint8Array,
} as const;

export function numel(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

export function tensor<D extends DType>(dtype: D, dims: readonly number[], data?: DataFor[D]): Tensor<D> {
  const n = numel(dims);
  const out = data ?? (new CONSTRUCTORS[dtype](n) as DataFor[D]);
  if (out.length !== n) {
    throw new Error(`tensor data has ${out.length} elements but shape [${dims.join(', ')}] needs ${n}`);
  }
  return { dtype, dims: [...dims], data: out };
}

export function f32(dims: readonly number[], data?: Float32Array | number[]): Tensor<'float32'> {
  return tensor('float32', dims, data === undefined ? undefined : Float32Array.from(data));
}

/** a typed array of `dtype` viewing `bytes` (copied when misaligned) */
export function viewBytes<D extends DType>(dtype: D, bytes: Uint8Array): DataFor[D] {
  const size = BYTES_PER_ELEMENT[dtype];
  const ctor = CONSTRUCTORS[dtype];
  const aligned = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  return new ctor(aligned.buffer as ArrayBuffer, aligned.byteOffset, aligned.byteLength / size) as DataFor[D];
}

export function bytesOf(t: Tensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

export function reshape<D extends DType>(t: Tensor<D>, dims: readonly number[]): Tensor<D> {
  if (numel(dims) !== numel(t.dims)) {
    throw new Error(`cannot reshape [${t.dims.join(', ')}] to [${dims.join(', ')}]`);
  }
  return { dtype: t.dtype, dims: [...dims], data: t.data };
}

export function shapeString(dims: readonly number[]): string {
  return `[${dims.join(', ')}]`;
}
