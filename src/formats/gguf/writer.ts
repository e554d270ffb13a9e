// A GGUF version 3 file (ggml docs/gguf.md), written one tensor at a time: tensor shapes and types are
// declared first (their byte sizes follow from the block arithmetic, so every offset is known before any
// data), then the header is written, then each tensor's bytes in declaration order.
//
// Layout of a file with T tensors and K metadata pairs, alignment A (general.alignment, default 32):
//   1. uint32 magic 0x46554747 (the bytes "GGUF"), uint32 version 3, uint64 T, uint64 K
//   2. K pairs: key (string, see values.ts), uint32 value type, value
//   3. T tensor infos: name (string), uint32 n_dims, n_dims × uint64 ne (ne[0] = the contiguous dimension,
//      so a weight [rows, cols] has ne = [cols, rows]), uint32 ggml type, uint64 offset of the tensor's data
//      relative to the start of the data section, a multiple of A
//   4. zero bytes up to the next multiple of A: the data section starts there (the writer always stores A as
//      general.alignment, its first metadata pair)
//   5. each tensor's bytes at its offset, followed by zero bytes up to a multiple of A
//   worked example: one F32 tensor "w" of shape [2] = [1, −2], A = 32 (so the one pair is the alignment):
//     47 47 55 46 | 03 00 00 00 | 01 00…00 (u64 1 tensor) | 01 00…00 (u64 1 pair)               bytes 0..23
//     11 00…00 "general.alignment" | 04 00 00 00 (uint32) | 20 00 00 00                         bytes 24..56
//     01 00…00 77 ("w") | 01 00 00 00 | 02 00…00 (ne) | 00 00 00 00 (F32) | 00…00 (offset 0)   bytes 57..89
//     6 zero bytes → the data section starts at 96: 00 00 80 3F 00 00 00 C0, then 24 zero bytes; 128 bytes

import type { FileHandle } from 'node:fs/promises';
import { writeAtomic } from '../safetensors.js';
import { rowBytes, type GgmlTypeInfo } from '../../quant/gguf-types.js';
import { ByteSink, u32, type GgufValue } from './values.js';
import { ReasonedError } from '../../diag/failure.js';

export const GGUF_MAGIC = 0x46554747;
export const GGUF_VERSION = 3;
export const DEFAULT_ALIGNMENT = 32;

export interface GgufTensorInfo {
  readonly name: string;
  /** numpy-order shape: [rows, cols] for a matrix; GGUF stores it reversed */
  readonly shape: readonly number[];
  readonly type: GgmlTypeInfo;
  /** offset of the data in the data section */
  readonly offset: number;
  readonly byteLength: number;
}

export class GgufWriteError extends ReasonedError<'gguf-write-invalid'> {
  constructor(message: string) {
    super('gguf-write-invalid', message);
  }
}

const alignUp = (n: number, a: number): number => Math.ceil(n / a) * a;

export function tensorBytes(shape: readonly number[], type: GgmlTypeInfo): number {
  const cols = shape[shape.length - 1] ?? 1;
  const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
  return rows * rowBytes(type, cols);
}

export class GgufWriter {
  readonly alignment: number;
  readonly #metadata = new Map<string, GgufValue>();
  readonly #tensors: GgufTensorInfo[] = [];
  #dataBytes = 0;

  constructor(alignment = DEFAULT_ALIGNMENT) {
    if (!Number.isInteger(alignment) || alignment < 1 || (alignment & (alignment - 1)) !== 0) {
      throw new GgufWriteError(`alignment ${alignment} is not a power of two`);
    }
    this.alignment = alignment;
    // a reader assumes 32 without it; written always, so the file says what it uses
    this.#metadata.set('general.alignment', u32(alignment));
  }

  set(key: string, value: GgufValue): this {
    if (key === 'general.alignment') throw new GgufWriteError('general.alignment is the writer\'s: pass the alignment to its constructor');
    if (this.#metadata.has(key)) throw new GgufWriteError(`metadata key "${key}" is set twice`);
    this.#metadata.set(key, value);
    return this;
  }

  /** declare a tensor; its data is given to write() in declaration order */
  addTensor(name: string, shape: readonly number[], type: GgmlTypeInfo): GgufTensorInfo {
    if (this.#tensors.some((t) => t.name === name)) throw new GgufWriteError(`tensor "${name}" is declared twice`);
    if (Buffer.byteLength(name) > 64) throw new GgufWriteError(`tensor name "${name}" is longer than GGUF's 64 bytes`);
    if (shape.length < 1 || shape.length > 4) throw new GgufWriteError(`tensor "${name}" has ${shape.length} dimensions; GGUF allows 1 to 4`);
    const info = { name, shape: [...shape], type, offset: this.#dataBytes, byteLength: tensorBytes(shape, type) };
    this.#tensors.push(info);
    this.#dataBytes = alignUp(this.#dataBytes + info.byteLength, this.alignment);
    return info;
  }

  get tensors(): readonly GgufTensorInfo[] {
    return this.#tensors;
  }

  /** sections 1–4: everything before the tensor data, padded to the alignment */
  header(): Uint8Array {
    const s = new ByteSink();
    s.u32(GGUF_MAGIC);
    s.u32(GGUF_VERSION);
    s.u64(this.#tensors.length);
    s.u64(this.#metadata.size);
    for (const [key, value] of this.#metadata) {
      s.string(key);
      s.value(value);
    }
    for (const t of this.#tensors) {
      s.string(t.name);
      s.u32(t.shape.length);
      for (const d of [...t.shape].reverse()) s.u64(d);
      s.u32(t.type.id);
      s.u64(t.offset);
    }
    s.zeros(alignUp(s.length, this.alignment) - s.length);
    return s.result();
  }

  /** write the file atomically; `data(info)` returns each tensor's bytes, called in declaration order */
  async write(path: string, data: (info: GgufTensorInfo) => Promise<Uint8Array> | Uint8Array): Promise<number> {
    const header = this.header();
    await writeAtomic(path, async (handle) => {
      let pos = await writeAll(handle, header, 0);
      for (const t of this.#tensors) {
        const bytes = await data(t);
        if (bytes.length !== t.byteLength) {
          throw new GgufWriteError(`tensor "${t.name}" (${t.type.name} [${t.shape.join(', ')}]) needs ${t.byteLength} bytes, got ${bytes.length}`);
        }
        pos = await writeAll(handle, bytes, pos);
        pos = await writeAll(handle, new Uint8Array(alignUp(pos, this.alignment) - pos), pos);
      }
    });
    return header.length + this.#dataBytes;
  }
}

async function writeAll(handle: FileHandle, bytes: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < bytes.length) done += (await handle.write(bytes, done, bytes.length - done, position + done)).bytesWritten;
  return position + bytes.length;
}
