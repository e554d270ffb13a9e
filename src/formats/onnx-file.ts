// Writing an ONNX model file with its large initializers in an external data file (`model.onnx_data`), as
// onnxruntime, Optimum and transformers.js expect for big models. Tensors are appended one at a time, each
// at an offset aligned to 4096 bytes (the spec's advice, so the file can be memory-mapped); small tensors
// stay inline in the protobuf. Both files are written to temp paths and renamed.

import { open, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import { bytesOf, type Tensor } from '../tensor.js';
import type { OnnxDType, TensorDef } from '../ort/proto.js';

const ALIGN = 4096;
const INLINE_LIMIT = 1024;

export class ExternalData {
  readonly path: string;
  readonly #tmp: string;
  #handle: FileHandle | undefined;
  #size = 0;
  #used = false;

  constructor(path: string) {
    this.path = path;
    this.#tmp = `${path}.tmp-${process.pid}`;
  }

  /** an initializer for `t`: inline when small, else appended to the data file */
  async tensor(name: string, t: Tensor, dtype: OnnxDType = t.dtype as OnnxDType): Promise<TensorDef> {
    const bytes = bytesOf(t);
    if (bytes.byteLength <= INLINE_LIMIT) return { name, dtype, dims: t.dims, raw: bytes.slice() };
    this.#handle ??= await open(this.#tmp, 'w');
    this.#used = true;
    const offset = Math.ceil(this.#size / ALIGN) * ALIGN;
    let written = 0;
    while (written < bytes.byteLength) written += (await this.#handle.write(bytes, written, bytes.byteLength - written, offset + written)).bytesWritten;
    this.#size = offset + bytes.byteLength;
    return { name, dtype, dims: t.dims, external: { location: basename(this.path), offset, length: bytes.byteLength } };
  }

  get used(): boolean {
    return this.#used;
  }

  async finish(): Promise<void> {
    if (!this.#handle) return;
    await this.#handle.close();
    this.#handle = undefined;
    await rename(this.#tmp, this.path);
  }

  async abort(): Promise<void> {
    await this.#handle?.close().catch(() => undefined);
    this.#handle = undefined;
    await rm(this.#tmp, { force: true });
  }
}

/** write the model protobuf atomically */
export async function writeModelFile(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, bytes);
  await rename(tmp, path);
}
