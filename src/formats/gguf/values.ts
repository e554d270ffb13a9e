// GGUF metadata values (ggml docs/gguf.md, "Standardized key-value pairs" and `gguf_metadata_value_type`):
// a typed value model, its little-endian encoding, and the decoder the reader uses.
//
//   value type  id  encoding
//   uint8..int64 0-5, 10, 11  the integer, little-endian, 1/2/4/8 bytes (uint8 0, int8 1, uint16 2, int16 3,
//                             uint32 4, int32 5, uint64 10, int64 11)
//   float32      6  IEEE float32         float64 12  IEEE float64
//   bool         7  one byte, 0 or 1
//   string       8  uint64 byte length, then UTF-8 bytes (no terminator)
//   array        9  uint32 item type, uint64 count, the items (an array of strings: each a string as above)
//
// worked example: key "general.alignment" = uint32 32 →
//   11 00 00 00 00 00 00 00  "general.alignment" (17 bytes)  04 00 00 00  20 00 00 00

export const VALUE_TYPES = {
  uint8: 0,
  int8: 1,
  uint16: 2,
  int16: 3,
  uint32: 4,
  int32: 5,
  float32: 6,
  bool: 7,
  string: 8,
  array: 9,
  uint64: 10,
  int64: 11,
  float64: 12,
} as const;

export type ScalarType = Exclude<keyof typeof VALUE_TYPES, 'array'>;
type NumberType = Exclude<ScalarType, 'bool' | 'string' | 'uint64' | 'int64'>;

export type GgufScalar =
  | { readonly type: NumberType; readonly value: number }
  | { readonly type: 'uint64' | 'int64'; readonly value: bigint }
  | { readonly type: 'bool'; readonly value: boolean }
  | { readonly type: 'string'; readonly value: string };

export type GgufArray = { readonly type: 'array'; readonly itemType: ScalarType; readonly values: readonly (number | bigint | boolean | string)[] };

export type GgufValue = GgufScalar | GgufArray;

export const u32 = (value: number): GgufValue => ({ type: 'uint32', value });
export const i32 = (value: number): GgufValue => ({ type: 'int32', value });
export const f32 = (value: number): GgufValue => ({ type: 'float32', value });
export const bool = (value: boolean): GgufValue => ({ type: 'bool', value });
export const str = (value: string): GgufValue => ({ type: 'string', value });
export const array = (itemType: ScalarType, values: ArrayLike<number | bigint | boolean | string>): GgufValue => ({ type: 'array', itemType, values: Array.from(values) });

const SIZE: Readonly<Record<Exclude<ScalarType, 'string'>, number>> = {
  uint8: 1, int8: 1, uint16: 2, int16: 2, uint32: 4, int32: 4, float32: 4, bool: 1, uint64: 8, int64: 8, float64: 8,
};

/** a growable little-endian byte buffer */
export class ByteSink {
  #buf = new Uint8Array(1 << 16);
  #view = new DataView(this.#buf.buffer);
  length = 0;

  #reserve(n: number): number {
    if (this.length + n > this.#buf.length) {
      const next = new Uint8Array(Math.max(this.#buf.length * 2, this.length + n));
      next.set(this.#buf.subarray(0, this.length));
      this.#buf = next;
      this.#view = new DataView(next.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }

  u32(v: number): void {
    this.#view.setUint32(this.#reserve(4), v, true);
  }

  u64(v: number | bigint): void {
    this.#view.setBigUint64(this.#reserve(8), BigInt(v), true);
  }

  bytes(b: Uint8Array): void {
    this.#buf.set(b, this.#reserve(b.length));
  }

  string(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.bytes(b);
  }

  scalar(type: ScalarType, v: number | bigint | boolean | string): void {
    if (type === 'string') return this.string(v as string);
    const at = this.#reserve(SIZE[type]);
    const d = this.#view;
    switch (type) {
      case 'uint8': return d.setUint8(at, v as number);
      case 'int8': return d.setInt8(at, v as number);
      case 'uint16': return d.setUint16(at, v as number, true);
      case 'int16': return d.setInt16(at, v as number, true);
      case 'uint32': return d.setUint32(at, v as number, true);
      case 'int32': return d.setInt32(at, v as number, true);
      case 'float32': return d.setFloat32(at, v as number, true);
      case 'float64': return d.setFloat64(at, v as number, true);
      case 'bool': return d.setUint8(at, v ? 1 : 0);
      case 'uint64': return d.setBigUint64(at, BigInt(v as bigint), true);
      case 'int64': return d.setBigInt64(at, BigInt(v as bigint), true);
    }
  }

  value(v: GgufValue): void {
    this.u32(VALUE_TYPES[v.type]);
    if (v.type !== 'array') return this.scalar(v.type, v.value);
    this.u32(VALUE_TYPES[v.itemType]);
    this.u64(v.values.length);
    for (const item of v.values) this.scalar(v.itemType, item);
  }

  zeros(n: number): void {
    this.#reserve(n);
  }

  result(): Uint8Array {
    return this.#buf.subarray(0, this.length);
  }
}

const TYPE_OF_ID = new Map<number, keyof typeof VALUE_TYPES>(Object.entries(VALUE_TYPES).map(([k, v]) => [v, k as keyof typeof VALUE_TYPES]));

/** reads little-endian values from a byte range; `need` is thrown (as a RangeError) when the bytes run out */
export class ByteSource {
  readonly #view: DataView;
  readonly #bytes: Uint8Array;
  pos = 0;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  #take(n: number): number {
    if (this.pos + n > this.#bytes.length) throw new RangeError(`GGUF header: needs bytes up to ${this.pos + n}, has ${this.#bytes.length}`);
    const at = this.pos;
    this.pos += n;
    return at;
  }

  u32(): number {
    return this.#view.getUint32(this.#take(4), true);
  }

  u64(): number {
    const v = this.#view.getBigUint64(this.#take(8), true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`GGUF header: a count or size of ${v} is beyond 2^53`);
    return Number(v);
  }

  string(): string {
    const n = this.u64();
    const at = this.#take(n);
    return Buffer.from(this.#bytes.buffer, this.#bytes.byteOffset + at, n).toString('utf8');
  }

  scalar(type: ScalarType): number | bigint | boolean | string {
    if (type === 'string') return this.string();
    const at = this.#take(SIZE[type]);
    const d = this.#view;
    switch (type) {
      case 'uint8': return d.getUint8(at);
      case 'int8': return d.getInt8(at);
      case 'uint16': return d.getUint16(at, true);
      case 'int16': return d.getInt16(at, true);
      case 'uint32': return d.getUint32(at, true);
      case 'int32': return d.getInt32(at, true);
      case 'float32': return d.getFloat32(at, true);
      case 'float64': return d.getFloat64(at, true);
      case 'bool': return d.getUint8(at) !== 0;
      case 'uint64': return d.getBigUint64(at, true);
      case 'int64': return d.getBigInt64(at, true);
    }
  }

  valueType(): keyof typeof VALUE_TYPES {
    const id = this.u32();
    const t = TYPE_OF_ID.get(id);
    if (t === undefined) throw new Error(`GGUF header: unknown metadata value type ${id} at byte ${this.pos - 4}`);
    return t;
  }

  value(): GgufValue {
    const type = this.valueType();
    if (type !== 'array') return { type, value: this.scalar(type) } as GgufScalar;
    const itemType = this.valueType();
    if (itemType === 'array') throw new Error('GGUF header: arrays of arrays are not supported');
    const n = this.u64();
    const values: (number | bigint | boolean | string)[] = new Array(n);
    for (let i = 0; i < n; i++) values[i] = this.scalar(itemType);
    return { type, itemType, values };
  }
}
