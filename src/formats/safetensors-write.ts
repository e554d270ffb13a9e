// Writing safetensors: one file from tensors in memory, or a sharded checkpoint streamed one tensor at a
// time. Every file is written under a temp name in its final directory and renamed into place, so a crash
// leaves temp files at worst, never a half-written .safetensors or index.

import { randomBytes } from 'node:crypto';
import { open as openFile, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { BYTES_PER_ELEMENT, bytesOf, numel, shapeString, type DType, type Tensor } from '../tensor.js';
import { SafetensorsError } from './safetensors-errors.js';
import { CODE_OF_DTYPE, encodeHeader } from './safetensors-header.js';

/** HF's default `max_shard_size` ("5GB") */
export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;
const IO_CHUNK = 1 << 30;
const COPY_CHUNK = 8 << 20;

interface Entry {
  name: string;
  dtype: DType;
  shape: readonly number[];
  begin: number;
  end: number;
}

/** write `tensors` (in iteration order) to `path` as one safetensors file */
export async function writeSafetensors(
  path: string,
  tensors: Iterable<readonly [string, Tensor]> | Readonly<Record<string, Tensor>>,
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  const list = Symbol.iterator in tensors ? [...(tensors as Iterable<readonly [string, Tensor]>)] : Object.entries(tensors);
  const names = new Set<string>();
  const entries: Entry[] = [];
  let offset = 0;
  for (const [name, t] of list) {
    checkTensor(path, names, name, t);
    names.add(name);
    entries.push({ name, dtype: t.dtype, shape: [...t.dims], begin: offset, end: offset + t.data.byteLength });
    offset += t.data.byteLength;
  }
  const header = encodeHeader(entries, withFormat(path, metadata));
  await writeAtomic(path, async (handle) => {
    await writeAll(handle, header, 0);
    let position = header.length;
    for (const [, t] of list) {
      await writeAll(handle, bytesOf(t), position);
      position += t.data.byteLength;
    }
  });
}

export interface SafetensorsWriterOptions {
  /** most tensor-data bytes per shard (headers not counted, as in HF); a larger tensor gets a shard of its own */
  maxShardBytes?: number;
  /** `__metadata__` of every shard; `format: "pt"` is added unless given */
  metadata?: Readonly<Record<string, string>>;
  /** files are `<prefix>.safetensors`, or `<prefix>-00001-of-00003.safetensors` plus `<prefix>.safetensors.index.json` */
  prefix?: string;
}

export interface WrittenCheckpoint {
  /** absolute paths of the .safetensors files, in shard order */
  readonly files: readonly string[];
  /** the index file; undefined for a single shard */
  readonly index: string | undefined;
  /** sum of all tensors' data bytes (the index's `metadata.total_size`) */
  readonly totalSize: number;
}

interface Shard {
  dataPath: string;
  handle: FileHandle | undefined;
  entries: Entry[];
  size: number;
}

/**
 * A sharded checkpoint written one tensor at a time: each add() appends the tensor's bytes to the current
 * shard's temp data file, so memory holds one tensor, not one shard; finish() writes every shard as
 * header + data (the shard count, and so the names, are known only then) and the index.
 */
export class SafetensorsWriter {
  readonly dir: string;
  readonly maxShardBytes: number;
  readonly prefix: string;
  readonly metadata: Readonly<Record<string, string>>;
  #shards: Shard[] = [];
  #names = new Set<string>();
  #queue: Promise<unknown> = Promise.resolve();
  #state: 'open' | 'finished' | 'aborted' = 'open';

  constructor(dir: string, options: SafetensorsWriterOptions = {}) {
    this.dir = dir;
    this.maxShardBytes = options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
    this.prefix = options.prefix ?? 'model';
    this.metadata = withFormat(dir, options.metadata);
    if (!(this.maxShardBytes > 0)) throw new RangeError(`maxShardBytes must be positive, got ${this.maxShardBytes}`);
  }

  /** append `t`; resolves once its bytes are on disk (the caller may then drop it) */
  async add(name: string, t: Tensor): Promise<void> {
    this.#checkOpen(name);
    checkTensor(this.dir, this.#names, name, t);
    this.#names.add(name);
    return this.#enqueue(() => this.#append(name, t));
  }

  async #append(name: string, t: Tensor): Promise<void> {
    const bytes = t.data.byteLength;
    let shard = this.#shards[this.#shards.length - 1];
    if (shard === undefined || (shard.size > 0 && shard.size + bytes > this.maxShardBytes)) {
      await shard?.handle?.close();
      if (shard) shard.handle = undefined;
      const dataPath = tempPath(join(this.dir, `${this.prefix}.shard-${this.#shards.length + 1}.data`));
      shard = { dataPath, handle: await openFile(dataPath, 'wx'), entries: [], size: 0 };
      this.#shards.push(shard);
    }
    await writeAll(shard.handle!, bytesOf(t), shard.size);
    shard.entries.push({ name, dtype: t.dtype, shape: [...t.dims], begin: shard.size, end: shard.size + bytes });
    shard.size += bytes;
  }

  /** write the shards and the index; the writer cannot be used afterwards */
  async finish(): Promise<WrittenCheckpoint> {
    this.#checkOpen();
    this.#state = 'finished';
    return this.#enqueue(async () => {
      try {
        return await this.#writeShards();
      } finally {
        await this.#removeTemps();
      }
    });
  }

  /** drop everything written so far */
  async abort(): Promise<void> {
    this.#state = 'aborted';
    return this.#enqueue(() => this.#removeTemps());
  }

  async #writeShards(): Promise<WrittenCheckpoint> {
    if (this.#shards.length === 0) this.#shards.push({ dataPath: '', handle: undefined, entries: [], size: 0 });
    const n = this.#shards.length;
    const files: string[] = [];
    const weightMap: [string, string][] = [];
    for (const [i, shard] of this.#shards.entries()) {
      await shard.handle?.close();
      shard.handle = undefined;
      const file = n === 1 ? `${this.prefix}.safetensors` : `${this.prefix}-${pad5(i + 1)}-of-${pad5(n)}.safetensors`;
      const path = join(this.dir, file);
      await writeAtomic(path, async (out) => {
        const header = encodeHeader(shard.entries, this.metadata);
        await writeAll(out, header, 0);
        if (shard.size > 0) await copyInto(shard.dataPath, out, header.length, shard.size);
      });
      files.push(path);
      for (const e of shard.entries) weightMap.push([e.name, file]);
    }
    const totalSize = this.#shards.reduce((s, sh) => s + sh.size, 0);
    if (n === 1) return { files, index: undefined, totalSize };
    const index = join(this.dir, `${this.prefix}.safetensors.index.json`);
    const text = new TextEncoder().encode(indexJson(totalSize, weightMap));
    await writeAtomic(index, (out) => writeAll(out, text, 0));
    return { files, index, totalSize };
  }

  async #removeTemps(): Promise<void> {
    for (const shard of this.#shards) {
      await shard.handle?.close();
      shard.handle = undefined;
      if (shard.dataPath !== '') await rm(shard.dataPath, { force: true });
    }
  }

  #enqueue<T>(job: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(job);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #checkOpen(name?: string): void {
    if (this.#state !== 'open') {
      const where = name === undefined ? {} : { tensor: name };
      throw new SafetensorsError('writer-finished', this.dir, `cannot be written: the writer was already ${this.#state}`, where);
    }
  }
}

// HF writes the index with sorted keys and an indent of 2
function indexJson(totalSize: number, weightMap: [string, string][]): string {
  const sorted = [...weightMap].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const lines = sorted.map(([name, file]) => `    ${JSON.stringify(name)}: ${JSON.stringify(file)}`);
  return `{\n  "metadata": {\n    "total_size": ${totalSize}\n  },\n  "weight_map": {\n${lines.join(',\n')}\n  }\n}\n`;
}

function checkTensor(file: string, names: ReadonlySet<string>, name: string, t: Tensor): void {
  const bad = (detail: string) => new SafetensorsError('bad-tensor', file, detail, { tensor: name });
  if (name === '__metadata__') throw new SafetensorsError('reserved-name', file, 'is reserved for the header metadata', { tensor: name });
  if (names.has(name)) throw new SafetensorsError('duplicate-name', file, 'was already written; expected unique tensor names', { tensor: name });
  if (!Object.hasOwn(CODE_OF_DTYPE, t.dtype)) throw bad(`dtype ${JSON.stringify(t.dtype)} has no safetensors code`);
  if (!t.dims.every((d) => Number.isSafeInteger(d) && d >= 0)) throw bad(`shape ${shapeString(t.dims)} is not a list of non-negative integers`);
  const n = numel(t.dims);
  if (t.data.length !== n || t.data.BYTES_PER_ELEMENT !== BYTES_PER_ELEMENT[t.dtype]) {
    throw bad(`data is ${t.data.constructor.name}(${t.data.length}) but ${t.dtype} ${shapeString(t.dims)} needs ${n} elements of ${BYTES_PER_ELEMENT[t.dtype]} bytes`);
  }
}

function withFormat(file: string, metadata: Readonly<Record<string, string>> | undefined): Readonly<Record<string, string>> {
  // transformers refuses a file whose metadata lacks a known "format"
  const out = { format: 'pt', ...metadata };
  for (const [k, v] of Object.entries(out)) {
    if (typeof v !== 'string') {
      throw new SafetensorsError('metadata-not-string', file, `is ${typeof v}; expected a string`, { field: `__metadata__.${k}` });
    }
  }
  return out;
}

function pad5(i: number): string {
  return String(i).padStart(5, '0');
}

function tempPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
}

/** write `path` through a temp file in the same directory, synced, then renamed over `path` */
export async function writeAtomic(path: string, write: (handle: FileHandle) => Promise<void>): Promise<void> {
  const tmp = tempPath(path);
  const handle = await openFile(tmp, 'wx');
  try {
    await write(handle);
    await handle.datasync();
    await handle.close();
    await rename(tmp, path);
  } catch (e) {
    await handle.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw e;
  }
}

async function writeAll(handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, done, Math.min(IO_CHUNK, bytes.length - done), position + done);
    done += bytesWritten;
  }
}

async function copyInto(source: string, out: FileHandle, position: number, length: number): Promise<void> {
  const input = await openFile(source, 'r');
  try {
    const buffer = new Uint8Array(Math.min(COPY_CHUNK, length));
    let done = 0;
    while (done < length) {
      const { bytesRead } = await input.read(buffer, 0, Math.min(buffer.length, length - done), done);
      if (bytesRead === 0) throw new Error(`${source}: temp data ended after ${done} of ${length} bytes`);
      await writeAll(out, buffer.subarray(0, bytesRead), position + done);
      done += bytesRead;
    }
  } finally {
    await input.close();
  }
}
