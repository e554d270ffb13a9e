// The safetensors header (byte layout: see safetensors.ts): the length prefix, the dtype table, strict
// validation of a parsed header against the file's size, and encoding a header for the writer.

import { BYTES_PER_ELEMENT, numel, shapeString, type DType } from '../tensor.js';
import { firstDuplicateKey } from './json-keys.js';
import { SafetensorsError } from './safetensors-errors.js';

/** the reference implementation's cap; anything larger is a corrupt or hostile file */
export const MAX_HEADER_BYTES = 100_000_000;
/** the writer pads the header so tensor data starts at a multiple of this */
export const DATA_ALIGNMENT = 8;

export const DTYPE_OF_CODE = {
  F64: 'float64',
  F32: 'float32',
  F16: 'float16',
  BF16: 'bfloat16',
  F8_E4M3: 'float8e4m3fn',
  I64: 'int64',
  I32: 'int32',
  I16: 'int16',
  I8: 'int8',
  U8: 'uint8',
  BOOL: 'bool',
} as const satisfies Record<string, DType>;

export type DtypeCode = keyof typeof DTYPE_OF_CODE;

export const CODE_OF_DTYPE: Readonly<Record<DType, DtypeCode>> = {
  float64: 'F64',
  float32: 'F32',
  float16: 'F16',
  bfloat16: 'BF16',
  float8e4m3fn: 'F8_E4M3',
  int64: 'I64',
  int32: 'I32',
  int16: 'I16',
  int8: 'I8',
  uint8: 'U8',
  bool: 'BOOL',
};

// valid in the spec, but no Tensor dtype holds them
const UNSUPPORTED_CODES = ['F8_E5M2', 'F8_E8M0', 'F6_E2M3', 'F6_E3M2', 'F4', 'U16', 'U32', 'U64', 'C64'];

const FIELDS = ['dtype', 'shape', 'data_offsets'] as const;

export interface TensorInfo {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** absolute file offsets [begin, end) of the tensor's bytes: 8 + header length + data_offsets */
  readonly byteRange: readonly [number, number];
}

export interface ParsedHeader {
  /** in data order (sorted by offset), which for files this writer made is the order tensors were added */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Readonly<Record<string, string>>;
}

/** the header length N from the first 8 bytes, checked against the cap and the file size */
export function readHeaderLength(file: string, prefix: Uint8Array, fileSize: number): number {
  if (fileSize < 8) {
    throw new SafetensorsError('file-too-short', file, `file has ${fileSize} bytes; a safetensors file needs at least the 8-byte header length`);
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError('header-length-out-of-range', file, `is ${n}, above the cap of ${MAX_HEADER_BYTES} bytes; expected N ≤ ${Math.min(MAX_HEADER_BYTES, fileSize - 8)}`, { field: 'header length' });
  }
  if (n > BigInt(fileSize - 8)) {
    throw new SafetensorsError('header-length-out-of-range', file, `is ${n}, but only ${fileSize - 8} bytes follow the 8-byte prefix; expected N ≤ ${fileSize - 8}`, { field: 'header length' });
  }
  return Number(n);
}

/** decode and validate the N header bytes; `fileSize` bounds the data section */
export function parseHeader(file: string, bytes: Uint8Array, fileSize: number): ParsedHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new SafetensorsError('header-not-utf8', file, `header (${bytes.length} bytes) is not valid UTF-8`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError('header-not-json', file, `header is not JSON (${(e as Error).message}); starts with ${JSON.stringify(text.slice(0, 40))}`);
  }
  if (!isObject(raw)) {
    throw new SafetensorsError('header-not-object', file, `header is ${describe(raw)}; expected a JSON object of tensor entries`);
  }
  checkDuplicateKeys(file, text);
  const dataSize = fileSize - 8 - bytes.length;
  const dataStart = 8 + bytes.length;
  let metadata: Record<string, string> = {};
  const entries: { name: string; dtype: DType; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, value] of Object.entries(raw)) {
    if (name === '__metadata__') metadata = parseMetadata(file, value);
    else entries.push({ name, ...parseEntry(file, name, value, dataSize) });
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  checkTiling(file, entries, dataSize);
  const tensors = new Map<string, TensorInfo>();
  for (const e of entries) {
    tensors.set(e.name, { name: e.name, dtype: e.dtype, shape: e.shape, byteRange: [dataStart + e.begin, dataStart + e.end] });
  }
  return { tensors, metadata };
}

function parseMetadata(file: string, value: unknown): Record<string, string> {
  if (!isObject(value)) {
    throw new SafetensorsError('metadata-not-object', file, `is ${describe(value)}; expected an object of string values`, { field: '__metadata__' });
  }
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') {
      throw new SafetensorsError('metadata-not-string', file, `is ${describe(v)}; expected a string`, { field: `__metadata__.${k}` });
    }
  }
  // fromEntries defines own properties, so a key named "__proto__" stays data
  return Object.fromEntries(Object.entries(value)) as Record<string, string>;
}

function parseEntry(file: string, name: string, value: unknown, dataSize: number) {
  const at = (field?: string) => (field === undefined ? { tensor: name } : { tensor: name, field });
  if (!isObject(value)) {
    throw new SafetensorsError('entry-not-object', file, `entry is ${describe(value)}; expected an object with ${FIELDS.join(', ')}`, at());
  }
  for (const key of Object.keys(value)) {
    if (!(FIELDS as readonly string[]).includes(key)) {
      throw new SafetensorsError('unknown-field', file, `is not a tensor field; expected only ${FIELDS.join(', ')}`, at(JSON.stringify(key)));
    }
  }
  for (const key of FIELDS) {
    if (!(key in value)) throw new SafetensorsError('missing-field', file, `is missing; every tensor entry needs ${FIELDS.join(', ')}`, at(key));
  }
  const code = value['dtype'];
  if (typeof code !== 'string' || !Object.hasOwn(DTYPE_OF_CODE, code)) {
    const known = Object.keys(DTYPE_OF_CODE).join(', ');
    if (typeof code === 'string' && UNSUPPORTED_CODES.includes(code)) {
      throw new SafetensorsError('unsupported-dtype', file, `${code} is a safetensors dtype quantforge cannot hold; supported: ${known}`, at('dtype'));
    }
    throw new SafetensorsError('unknown-dtype', file, `is ${describe(code)}; expected one of ${known}`, at('dtype'));
  }
  const dtype: DType = DTYPE_OF_CODE[code as DtypeCode];
  const shape = value['shape'];
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
    throw new SafetensorsError('bad-shape', file, `is ${describe(shape)}; expected an array of non-negative integers`, at('shape'));
  }
  const dims = shape as number[];
  const bytes = numel(dims) * BYTES_PER_ELEMENT[dtype];
  if (!Number.isSafeInteger(bytes)) {
    throw new SafetensorsError('bad-shape', file, `${shapeString(dims)} of ${code} needs ${bytes} bytes, beyond 2^53`, at('shape'));
  }
  const offsets = value['data_offsets'];
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && (o as number) >= 0)) {
    throw new SafetensorsError('bad-offsets', file, `is ${describe(offsets)}; expected [begin, end], two non-negative integers`, at('data_offsets'));
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) {
    throw new SafetensorsError('bad-offsets', file, `${shapeString(offsets)} ends before it begins; expected begin ≤ end`, at('data_offsets'));
  }
  if (end - begin !== bytes) {
    throw new SafetensorsError('byte-size-mismatch', file, `${shapeString(offsets)} span ${end - begin} bytes, but ${code} ${shapeString(dims)} needs ${bytes}`, at('data_offsets'));
  }
  if (end > dataSize) {
    throw new SafetensorsError('offsets-out-of-bounds', file, `${shapeString(offsets)} reach past the data section, which has ${dataSize} bytes (is the file truncated?)`, at('data_offsets'));
  }
  return { dtype, shape: dims, begin, end };
}

// sorted spans must tile [0, dataSize) exactly: the spec allows neither holes nor overlaps
function checkTiling(file: string, sorted: readonly { name: string; begin: number; end: number }[], dataSize: number): void {
  let cursor = 0;
  let previous: { name: string; begin: number; end: number } | undefined;
  for (const e of sorted) {
    if (e.begin === cursor) {
      cursor = e.end;
      previous = e;
      continue;
    }
    const span = `[${e.begin}, ${e.end}]`;
    const prev = previous === undefined ? 'the data section starts at 0' : `tensor ${JSON.stringify(previous.name)} ends at ${cursor}`;
    if (e.begin < cursor) {
      throw new SafetensorsError('offsets-overlap', file, `${span} overlap: ${prev}; expected spans that do not overlap`, { tensor: e.name, field: 'data_offsets' });
    }
    throw new SafetensorsError('offsets-gap', file, `${span} leave bytes [${cursor}, ${e.begin}) of the data section unused: ${prev}; expected no gaps`, { tensor: e.name, field: 'data_offsets' });
  }
  if (cursor !== dataSize) {
    const unused = `bytes [${cursor}, ${dataSize}) of the ${dataSize}-byte data section belong to no tensor; expected the tensors to cover it exactly`;
    if (previous === undefined) throw new SafetensorsError('offsets-gap', file, `header has no tensors, but ${unused}`);
    const span = `[${previous.begin}, ${previous.end}]`;
    throw new SafetensorsError('offsets-gap', file, `${span} end the last tensor, but ${unused}`, { tensor: previous.name, field: 'data_offsets' });
  }
}

// JSON.parse keeps the last of repeated keys silently; a repeated tensor name or field is refused instead
function checkDuplicateKeys(file: string, text: string): void {
  const dup = firstDuplicateKey(text);
  if (dup) throwDuplicate(file, dup.depth, dup.key, dup.owner);
}

function throwDuplicate(file: string, depth: number, key: string, owner: string | undefined): never {
  if (depth === 1) {
    throw new SafetensorsError('duplicate-name', file, 'appears more than once in the header; expected unique tensor names', { tensor: key });
  }
  if (owner === '__metadata__' && depth === 2) {
    throw new SafetensorsError('duplicate-field', file, 'appears more than once; expected unique metadata keys', { field: `__metadata__.${key}` });
  }
  const where = owner === undefined ? { field: JSON.stringify(key) } : { tensor: owner, field: JSON.stringify(key) };
  throw new SafetensorsError('duplicate-field', file, 'appears more than once in one entry; expected each field once', where);
}

/** 8-byte length prefix + header JSON padded with spaces to a multiple of DATA_ALIGNMENT */
export function encodeHeader(
  entries: readonly { name: string; dtype: DType; shape: readonly number[]; begin: number; end: number }[],
  metadata: Readonly<Record<string, string>>,
): Uint8Array {
  // built by hand: an object would move integer-like names ("0") ahead of the others
  const parts = [`"__metadata__":${JSON.stringify(metadata)}`];
  for (const e of entries) {
    const info = { dtype: CODE_OF_DTYPE[e.dtype], shape: e.shape, data_offsets: [e.begin, e.end] };
    parts.push(`${JSON.stringify(e.name)}:${JSON.stringify(info)}`);
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const padded = Math.ceil(json.length / DATA_ALIGNMENT) * DATA_ALIGNMENT;
  const out = new Uint8Array(8 + padded).fill(0x20, 8 + json.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// bounded: a hostile header may hold a 100 MB string or arrays nested 100 000 deep
function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) {
    const flat = v.length <= 8 && v.every((x) => typeof x === 'number' || typeof x === 'boolean' || x === null);
    return flat ? JSON.stringify(v) : `an array of ${v.length}${v.some((x) => typeof x === 'object' && x !== null) ? ' (nested)' : ''}`;
  }
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  return `${String(v)} (a ${typeof v})`;
}
