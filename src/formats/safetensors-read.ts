// Reading a safetensors file lazily: open() reads and validates only the header; each read() is one
// positional read of one tensor's bytes, so memory never holds more than the tensor asked for.

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { open as openFile, type FileHandle } from 'node:fs/promises';
import { tensor, viewBytes, type Tensor } from '../tensor.js';
import { fromBfloat16, fromFloat16 } from '../quant/half.js';
import { SafetensorsError } from './safetensors-errors.js';
import { parseHeader, readHeaderLength, type ParsedHeader, type TensorInfo } from './safetensors-header.js';

// one read() call moves at most this much (libuv refuses single reads of 2 GiB or more)
const READ_CHUNK = 1 << 30;

export class SafetensorsFile {
  readonly path: string;
  /** every tensor, in the order its bytes appear in the file */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Readonly<Record<string, string>>;
  #handle: FileHandle | undefined;

  private constructor(path: string, handle: FileHandle, tensors: ReadonlyMap<string, TensorInfo>, metadata: Readonly<Record<string, string>>) {
    this.path = path;
    this.#handle = handle;
    this.tensors = tensors;
    this.metadata = metadata;
  }

  /** open `path` and validate its header; throws SafetensorsError for any malformed file */
  static async open(path: string): Promise<SafetensorsFile> {
    const handle = await openFile(path, 'r').catch((e: NodeJS.ErrnoException) => {
      throw new SafetensorsError('file-unreadable', path, `cannot be opened (${e.code ?? e.message})`);
    });
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) throw new SafetensorsError('file-unreadable', path, 'is not a regular file');
      const { size } = stats;
      const prefix = await readExact(handle, path, 0, Math.min(8, size));
      const n = readHeaderLength(path, prefix, size);
      const parsed = parseHeader(path, await readExact(handle, path, 8, n), size);
      return new SafetensorsFile(path, handle, parsed.tensors, parsed.metadata);
    } catch (e) {
      await handle.close();
      throw e;
    }
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (info === undefined) {
      const some = this.names().slice(0, 3).map((n) => JSON.stringify(n)).join(', ');
      const has = this.tensors.size === 0 ? 'the file has no tensors' : `the file has ${this.tensors.size} tensors (${some}${this.tensors.size > 3 ? ', …' : ''})`;
      throw new SafetensorsError('tensor-not-found', this.path, `is not in the file; ${has}`, { tensor: name });
    }
    return info;
  }

  /** the tensor's raw little-endian bytes, in a fresh buffer */
  async readBytes(name: string): Promise<Uint8Array> {
    const info = this.info(name);
    if (this.#handle === undefined) {
      throw new SafetensorsError('file-closed', this.path, 'cannot be read: the file was closed', { tensor: name });
    }
    const [begin, end] = info.byteRange;
    return readExact(this.#handle, this.path, begin, end - begin, name);
  }

  /** the tensor in its stored dtype (float16/bfloat16 as raw bits) */
  async read(name: string): Promise<Tensor> {
    const info = this.info(name);
    const bytes = await this.readBytes(name);
    return tensor(info.dtype, info.shape, viewBytes(info.dtype, bytes));
  }

  /**
   * rows [start, end) of the tensor along its first dimension, read from the file by offsets alone (a shard of
   * the calibration windows reads its own windows, not the whole activation file)
   */
  async readRows(name: string, start: number, end: number): Promise<Tensor> {
    const info = this.info(name);
    const rows = info.shape[0] ?? 0;
    if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= rows)) {
      throw new SafetensorsError('offsets-out-of-bounds', this.path, `rows [${start}, ${end}) are outside its ${rows} rows`, { tensor: name });
    }
    if (this.#handle === undefined) {
      throw new SafetensorsError('file-closed', this.path, 'cannot be read: the file was closed', { tensor: name });
    }
    const [begin, stop] = info.byteRange;
    const rowBytes = rows === 0 ? 0 : (stop - begin) / rows;
    const bytes = await readExact(this.#handle, this.path, begin + start * rowBytes, (end - start) * rowBytes, name);
    return tensor(info.dtype, [end - start, ...info.shape.slice(1)], viewBytes(info.dtype, bytes));
  }

  /** the tensor converted to float32 (exact for every dtype but float64 and large int32/int64) */
  async readAs(name: string, dtype: 'float32'): Promise<Tensor<'float32'>> {
    if (dtype !== 'float32') throw new Error(`readAs supports only float32, got ${String(dtype)}`);
    return asFloat32(await this.read(name));
  }

  async close(): Promise<void> {
    const handle = this.#handle;
    this.#handle = undefined;
    await handle?.close();
  }
}

/** the validated header of `path` alone, read synchronously: checks before any compute read only this */
export function readHeaderSync(path: string): ParsedHeader & { readonly size: number } {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new SafetensorsError('file-unreadable', path, `cannot be opened (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile()) throw new SafetensorsError('file-unreadable', path, 'is not a regular file');
    const read = (position: number, length: number): Uint8Array => {
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const n = readSync(fd, out, done, Math.min(READ_CHUNK, length - done), position + done);
        if (n === 0) throw new SafetensorsError('short-read', path, `ended after ${position + done} bytes while reading [${position}, ${position + length}); was the file truncated?`);
        done += n;
      }
      return out;
    };
    const n = readHeaderLength(path, read(0, Math.min(8, stats.size)), stats.size);
    return { ...parseHeader(path, read(8, n), stats.size), size: stats.size };
  } finally {
    closeSync(fd);
  }
}

/** `t` converted to float32; float32 input is returned as is */
export function asFloat32(t: Tensor): Tensor<'float32'> {
  const dims = t.dims;
  switch (t.dtype) {
    case 'float32':
      return t as Tensor<'float32'>;
    case 'float16':
      return tensor('float32', dims, fromFloat16(t.data as Uint16Array));
    case 'bfloat16':
      return tensor('float32', dims, fromBfloat16(t.data as Uint16Array));
    case 'int64': {
      const src = t.data as BigInt64Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = Number(src[i]!);
      return tensor('float32', dims, out);
    }
    default:
      return tensor('float32', dims, Float32Array.from(t.data as Exclude<Tensor['data'], BigInt64Array>));
  }
}

async function readExact(handle: FileHandle, path: string, position: number, length: number, name?: string): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(out, done, Math.min(READ_CHUNK, length - done), position + done);
    if (bytesRead === 0) {
      const where = name === undefined ? {} : { tensor: name };
      throw new SafetensorsError('short-read', path, `ended after ${position + done} bytes while reading [${position}, ${position + length}); was the file truncated?`, where);
    }
    done += bytesRead;
  }
  return out;
}
