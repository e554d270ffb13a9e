// Reading a GGUF file (the layout writer.ts documents): the header, metadata and tensor infos are parsed
// up front; tensor bytes are read one tensor at a time with positional reads.

import { open, type FileHandle } from 'node:fs/promises';
import { ggmlTypeById, type GgmlTypeInfo } from '../../quant/gguf-types.js';
import { ByteSource, type GgufValue } from './values.js';
import { DEFAULT_ALIGNMENT, GGUF_MAGIC, tensorBytes, type GgufTensorInfo } from './writer.js';
import { ReasonedError } from '../../diag/failure.js';

export class GgufReadError extends ReasonedError<'gguf-read-invalid'> {
  constructor(message: string) {
    super('gguf-read-invalid', message);
  }
}

export interface GgufHeader {
  readonly version: number;
  readonly metadata: ReadonlyMap<string, GgufValue>;
  readonly tensors: readonly GgufTensorInfo[];
  readonly alignment: number;
  /** absolute file offset of the data section */
  readonly dataOffset: number;
}

/** parse everything before the tensor data from `bytes` (a prefix of the file); RangeError when it is too short */
export function parseGgufHeader(bytes: Uint8Array): GgufHeader {
  const src = new ByteSource(bytes);
  const magic = src.u32();
  if (magic !== GGUF_MAGIC) throw new GgufReadError(`not a GGUF file: magic 0x${magic.toString(16)}, expected 0x${GGUF_MAGIC.toString(16)} ("GGUF")`);
  const version = src.u32();
  if (version !== 2 && version !== 3) throw new GgufReadError(`GGUF version ${version} is not supported; expected 2 or 3`);
  const nTensors = src.u64();
  const nKv = src.u64();
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    const key = src.string();
    if (metadata.has(key)) throw new GgufReadError(`metadata key "${key}" appears twice`);
    metadata.set(key, src.value());
  }
  const align = metadata.get('general.alignment');
  const alignment = align?.type === 'uint32' ? align.value : DEFAULT_ALIGNMENT;
  const tensors: GgufTensorInfo[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = src.string();
    const nDims = src.u32();
    const ne: number[] = [];
    for (let d = 0; d < nDims; d++) ne.push(src.u64());
    const type: GgmlTypeInfo = ggmlTypeById(src.u32());
    const offset = src.u64();
    if (offset % alignment !== 0) throw new GgufReadError(`tensor "${name}" starts at data offset ${offset}, not a multiple of the alignment ${alignment}`);
    const shape = ne.reverse();
    tensors.push({ name, shape, type, offset, byteLength: tensorBytes(shape, type) });
  }
  return { version, metadata, tensors, alignment, dataOffset: Math.ceil(src.pos / alignment) * alignment };
}

export class GgufFile {
  readonly path: string;
  readonly header: GgufHeader;
  readonly #handle: FileHandle;
  readonly #byName: ReadonlyMap<string, GgufTensorInfo>;

  private constructor(path: string, handle: FileHandle, header: GgufHeader) {
    this.path = path;
    this.#handle = handle;
    this.header = header;
    this.#byName = new Map(header.tensors.map((t) => [t.name, t]));
  }

  static async open(path: string): Promise<GgufFile> {
    const handle = await open(path, 'r');
    try {
      const size = (await handle.stat()).size;
      for (let n = Math.min(size, 1 << 20); ; n = Math.min(size, n * 4)) {
        const bytes = new Uint8Array(n);
        await handle.read(bytes, 0, n, 0);
        try {
          const header = parseGgufHeader(bytes);
          const end = Math.max(0, ...header.tensors.map((t) => header.dataOffset + t.offset + t.byteLength));
          if (end > size) throw new GgufReadError(`${path}: tensor data ends at byte ${end}, but the file has ${size} bytes`);
          return new GgufFile(path, handle, header);
        } catch (e) {
          if (!(e instanceof RangeError) || n === size) throw e;
        }
      }
    } catch (e) {
      await handle.close();
      throw e instanceof GgufReadError ? e : new GgufReadError(`${path}: ${(e as Error).message}`);
    }
  }

  has(name: string): boolean {
    return this.#byName.has(name);
  }

  info(name: string): GgufTensorInfo {
    const t = this.#byName.get(name);
    if (t === undefined) throw new GgufReadError(`${this.path}: no tensor "${name}"`);
    return t;
  }

  /** a metadata value by key (undefined when absent) */
  get(key: string): GgufValue | undefined {
    return this.header.metadata.get(key);
  }

  async bytes(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    const out = new Uint8Array(t.byteLength);
    await this.#handle.read(out, 0, t.byteLength, this.header.dataOffset + t.offset);
    return out;
  }

  async close(): Promise<void> {
    await this.#handle.close();
  }
}
