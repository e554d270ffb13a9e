// A minimal protobuf *encoder* for the subset of onnx.proto that quantforge emits (ModelProto, GraphProto,
// NodeProto, AttributeProto, TensorProto, ValueInfoProto). Field numbers follow onnx/onnx.proto3.
//
// Wire format: each field is a varint key (field << 3 | wire type) followed by its payload;
// wire type 0 = varint, 1 = 64-bit, 2 = length-delimited, 5 = 32-bit.

class Writer {
  #chunks: Uint8Array[] = [];
  #scratch: number[] = [];

  #flushScratch(): void {
    if (this.#scratch.length > 0) {
      this.#chunks.push(Uint8Array.from(this.#scratch));
      this.#scratch = [];
    }
  }

  varint(value: number | bigint): void {
    let v = BigInt.asUintN(64, BigInt(value));
    if (v < 0x80n) {
      this.#scratch.push(Number(v));
      return;
    }
    while (v >= 0x80n) {
      this.#scratch.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.#scratch.push(Number(v));
  }

  key(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  bytes(field: number, data: Uint8Array): void {
    this.key(field, 2);
    this.varint(data.byteLength);
    this.#flushScratch();
    this.#chunks.push(data);
  }

  string(field: number, s: string): void {
    this.bytes(field, new TextEncoder().encode(s));
  }

  int(field: number, v: number | bigint): void {
    this.key(field, 0);
    this.varint(v);
  }

  float(field: number, v: number): void {
    this.key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.#flushScratch();
    this.#chunks.push(b);
  }

  message(field: number, build: (w: Writer) => void): void {
    const inner = new Writer();
    build(inner);
    this.bytes(field, inner.finish());
  }

  packedInts(field: number, values: readonly (number | bigint)[]): void {
    const inner = new Writer();
    for (const v of values) inner.varint(v);
    this.bytes(field, inner.finish());
  }

  packedFloats(field: number, values: readonly number[]): void {
    this.bytes(field, new Uint8Array(Float32Array.from(values).buffer));
  }

  finish(): Uint8Array {
    this.#flushScratch();
    const total = this.#chunks.reduce((n, c) => n + c.byteLength, 0);
    const out = new Uint8Array(total);
    let off = 0;
    for (const c of this.#chunks) {
      out.set(c, off);
      off += c.byteLength;
    }
    return out;
  }
}

/** onnx TensorProto.DataType */
export const ONNX_DTYPE = {
  float32: 1,
  uint8: 2,
  int8: 3,
  uint16: 4,
  int16: 5,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  float64: 11,
  bfloat16: 16,
  float8e4m3fn: 17,
  uint4: 21,
  int4: 22,
  float4e2m1: 23,
} as const;
export type OnnxDType = keyof typeof ONNX_DTYPE;

export type AttrValue =
  | { kind: 'float'; value: number }
  | { kind: 'int'; value: number }
  | { kind: 'string'; value: string }
  | { kind: 'floats'; value: readonly number[] }
  | { kind: 'ints'; value: readonly number[] }
  | { kind: 'tensor'; value: TensorDef };

export interface TensorDef {
  name: string;
  dtype: OnnxDType;
  dims: readonly number[];
  /** raw little-endian bytes; absent when the data lives in an external file */
  raw?: Uint8Array;
  external?: { location: string; offset: number; length: number };
}

export interface NodeDef {
  opType: string;
  domain: string;
  inputs: readonly string[];
  outputs: readonly string[];
  attrs: Readonly<Record<string, AttrValue>>;
  name: string;
}

export interface ValueInfoDef {
  name: string;
  dtype: OnnxDType;
  /** numbers are fixed sizes, strings symbolic dimension names; undefined: rank unknown */
  shape: readonly (number | string)[] | undefined;
}

export interface ModelDef {
  irVersion: number;
  opsets: readonly { domain: string; version: number }[];
  producer: string;
  graphName: string;
  nodes: readonly NodeDef[];
  initializers: readonly TensorDef[];
  inputs: readonly ValueInfoDef[];
  outputs: readonly ValueInfoDef[];
  metadata?: Readonly<Record<string, string>>;
}

const ATTR_TYPE = { float: 1, int: 2, string: 3, tensor: 4, floats: 6, ints: 7 } as const;

function writeTensor(w: Writer, t: TensorDef): void {
  w.packedInts(1, t.dims);
  w.int(2, ONNX_DTYPE[t.dtype]);
  w.string(8, t.name);
  if (t.external) {
    const entries: [string, string][] = [
      ['location', t.external.location],
      ['offset', String(t.external.offset)],
      ['length', String(t.external.length)],
    ];
    for (const [k, v] of entries) {
      w.message(13, (e) => {
        e.string(1, k);
        e.string(2, v);
      });
    }
    w.int(14, 1);
  } else {
    w.bytes(9, t.raw ?? new Uint8Array(0));
  }
}

function writeAttr(w: Writer, name: string, a: AttrValue): void {
  w.string(1, name);
  w.int(20, ATTR_TYPE[a.kind]);
  switch (a.kind) {
    case 'float':
      w.float(2, a.value);
      break;
    case 'int':
      w.int(3, a.value);
      break;
    case 'string':
      w.string(4, a.value);
      break;
    case 'tensor':
      w.message(5, (t) => writeTensor(t, a.value));
      break;
    case 'floats':
      w.packedFloats(7, a.value);
      break;
    case 'ints':
      w.packedInts(8, a.value);
      break;
  }
}

function writeValueInfo(w: Writer, v: ValueInfoDef): void {
  w.string(1, v.name);
  w.message(2, (type) =>
    type.message(1, (tt) => {
      tt.int(1, ONNX_DTYPE[v.dtype]);
      const dims = v.shape;
      if (dims === undefined) return;
      tt.message(2, (shape) => {
        for (const d of dims) {
          shape.message(1, (dim) => (typeof d === 'number' ? dim.int(1, d) : dim.string(2, d)));
        }
      });
    }),
  );
}

function writeNode(w: Writer, n: NodeDef): void {
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, n.name);
  w.string(4, n.opType);
  for (const [k, a] of Object.entries(n.attrs)) w.message(5, (aw) => writeAttr(aw, k, a));
  if (n.domain !== '') w.string(7, n.domain);
}

/** serialise a model to ONNX protobuf bytes */
export function encodeModel(m: ModelDef): Uint8Array {
  const w = new Writer();
  w.int(1, m.irVersion);
  w.string(2, m.producer);
  w.message(7, (g) => {
    for (const n of m.nodes) g.message(1, (nw) => writeNode(nw, n));
    g.string(2, m.graphName);
    for (const t of m.initializers) g.message(5, (tw) => writeTensor(tw, t));
    for (const i of m.inputs) g.message(11, (vw) => writeValueInfo(vw, i));
    for (const o of m.outputs) g.message(12, (vw) => writeValueInfo(vw, o));
  });
  for (const o of m.opsets) {
    w.message(8, (ow) => {
      if (o.domain !== '') ow.string(1, o.domain);
      ow.int(2, o.version);
    });
  }
  for (const [k, v] of Object.entries(m.metadata ?? {})) {
    w.message(14, (e) => {
      e.string(1, k);
      e.string(2, v);
    });
  }
  return w.finish();
}
