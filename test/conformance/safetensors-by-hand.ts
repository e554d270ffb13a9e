// A safetensors reader written from the format's description (huggingface/safetensors README), with no code
// from quantforge: 8 bytes little-endian u64 N, N bytes of UTF-8 JSON (may be padded with spaces) mapping each
// tensor name to {dtype, shape, data_offsets: [begin, end]} relative to the byte buffer that follows, plus an
// optional "__metadata__" string map. The buffer holds the tensors row-major, little-endian, back to back.
// Every structural rule is checked here so a conformance test fails on a file that only quantforge reads.

import { readFileSync } from 'node:fs';

export interface HandTensor {
  dtype: string;
  shape: number[];
  bytes: Buffer;
}

const DTYPE_BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

export function readSafetensorsByHand(path: string): { tensors: Map<string, HandTensor>; metadata: Record<string, string> | undefined } {
  const file = readFileSync(path);
  if (file.length < 8) throw new Error(`${path}: shorter than the 8-byte header length`);
  const n = Number(file.readBigUInt64LE(0));
  if (8 + n > file.length) throw new Error(`${path}: header length ${n} runs past the file`);
  const header = JSON.parse(file.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>;
  const buffer = file.subarray(8 + n);
  const tensors = new Map<string, HandTensor>();
  let metadata: Record<string, string> | undefined;
  const spans: [number, number, string][] = [];
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = v as Record<string, string>;
      for (const x of Object.values(metadata)) if (typeof x !== 'string') throw new Error(`${path}: __metadata__ values must be strings`);
      continue;
    }
    const { dtype, shape, data_offsets: offsets } = v as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const size = DTYPE_BYTES[dtype];
    if (size === undefined) throw new Error(`${path}: ${name} has unknown dtype ${dtype}`);
    const elements = shape.reduce((a, b) => a * b, 1);
    if (offsets[1] - offsets[0] !== elements * size) throw new Error(`${path}: ${name} spans ${offsets[1] - offsets[0]} bytes, ${dtype}${JSON.stringify(shape)} needs ${elements * size}`);
    spans.push([offsets[0], offsets[1], name]);
    tensors.set(name, { dtype, shape, bytes: buffer.subarray(offsets[0], offsets[1]) });
  }
  // the byte buffer is covered exactly, without holes or overlaps
  spans.sort((a, b) => a[0] - b[0]);
  let end = 0;
  for (const [b, e, name] of spans) {
    if (b !== end) throw new Error(`${path}: ${name} starts at ${b}, the previous tensor ended at ${end}`);
    end = e;
  }
  if (end !== buffer.length) throw new Error(`${path}: tensors end at ${end} but the buffer has ${buffer.length} bytes`);
  return { tensors, metadata };
}

/** every tensor of a HF model directory: model.safetensors, or the shards model.safetensors.index.json names */
export function readModelDirByHand(dir: string): Map<string, HandTensor> {
  let files = ['model.safetensors'];
  try {
    const index = JSON.parse(readFileSync(`${dir}/model.safetensors.index.json`, 'utf8')) as { weight_map: Record<string, string> };
    files = [...new Set(Object.values(index.weight_map))];
  } catch {
    // no index: a single file
  }
  const all = new Map<string, HandTensor>();
  for (const f of files) for (const [k, t] of readSafetensorsByHand(`${dir}/${f}`).tensors) all.set(k, t);
  return all;
}

const view = (t: HandTensor): DataView => new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);

/** float tensors (F32, F16, BF16) as numbers */
export function floats(t: HandTensor): number[] {
  const v = view(t);
  const out: number[] = [];
  if (t.dtype === 'F32') for (let i = 0; i < t.bytes.length; i += 4) out.push(v.getFloat32(i, true));
  else if (t.dtype === 'BF16') for (let i = 0; i < t.bytes.length; i += 2) out.push(new Float32Array(new Uint32Array([v.getUint16(i, true) << 16]).buffer)[0]!);
  else if (t.dtype === 'F16') for (let i = 0; i < t.bytes.length; i += 2) out.push(half(v.getUint16(i, true)));
  else throw new Error(`not a float tensor: ${t.dtype}`);
  return out;
}

function half(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** integer tensors (I8, I32, I64) as numbers */
export function ints(t: HandTensor): number[] {
  const v = view(t);
  const out: number[] = [];
  if (t.dtype === 'I8') for (let i = 0; i < t.bytes.length; i++) out.push(v.getInt8(i));
  else if (t.dtype === 'I32') for (let i = 0; i < t.bytes.length; i += 4) out.push(v.getInt32(i, true));
  else if (t.dtype === 'I64') for (let i = 0; i < t.bytes.length; i += 8) out.push(Number(v.getBigInt64(i, true)));
  else throw new Error(`not an integer tensor: ${t.dtype}`);
  return out;
}
