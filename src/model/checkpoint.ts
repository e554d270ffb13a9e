// The weights of a HuggingFace model directory, read one tensor at a time. Weight files are found as
// transformers finds them: `model.safetensors`, else `model.safetensors.index.json` (shards opened lazily,
// on the first read of one of their tensors), else every `*.safetensors` file present. Pickle weights are
// refused outright: loading them can execute arbitrary code.

import { basename } from 'node:path';
import { SafetensorsFile, type TensorInfo } from '../formats/safetensors.js';
import type { Tensor } from '../tensor.js';
import { CheckpointError, locateWeights } from './weight-files.js';

export { CheckpointError } from './weight-files.js';

export interface CheckpointTensorInfo extends TensorInfo {
  /** absolute path of the .safetensors file holding the tensor */
  readonly file: string;
}

export class Checkpoint {
  readonly dir: string;
  /** the index file of a sharded checkpoint, else undefined */
  readonly index: string | undefined;
  readonly #fileOf: ReadonlyMap<string, string>;
  readonly #open = new Map<string, Promise<SafetensorsFile>>();

  constructor(dir: string, fileOf: ReadonlyMap<string, string>, index: string | undefined, opened: readonly SafetensorsFile[] = []) {
    this.dir = dir;
    this.#fileOf = fileOf;
    this.index = index;
    for (const f of opened) this.#open.set(f.path, Promise.resolve(f));
  }

  names(): string[] {
    return [...this.#fileOf.keys()];
  }

  has(name: string): boolean {
    return this.#fileOf.has(name);
  }

  /** the weight files (absolute paths, sorted), e.g. for content digests */
  files(): string[] {
    return [...new Set(this.#fileOf.values())].sort();
  }

  async info(name: string): Promise<CheckpointTensorInfo> {
    const file = await this.#fileFor(name);
    return { ...file.info(name), file: file.path };
  }

  /** the tensor in its stored dtype */
  async read(name: string): Promise<Tensor> {
    return (await this.#fileFor(name)).read(name);
  }

  async readAs(name: string, dtype: 'float32'): Promise<Tensor<'float32'>> {
    return (await this.#fileFor(name)).readAs(name, dtype);
  }

  async close(): Promise<void> {
    const files = await Promise.allSettled(this.#open.values());
    this.#open.clear();
    for (const f of files) if (f.status === 'fulfilled') await f.value.close();
  }

  #fileFor(name: string): Promise<SafetensorsFile> {
    const path = this.#fileOf.get(name);
    if (path === undefined) {
      const some = this.names().slice(0, 3).map((n) => JSON.stringify(n)).join(', ');
      const err = new CheckpointError('tensor-not-found', `${this.dir}: tensor ${JSON.stringify(name)} is not in the checkpoint; it has ${this.#fileOf.size} tensors (${some}${this.#fileOf.size > 3 ? ', …' : ''})`, { file: this.dir, field: name });
      return Promise.reject(err);
    }
    let file = this.#open.get(path);
    if (file === undefined) {
      file = this.#openShard(path);
      this.#open.set(path, file);
    }
    return file;
  }

  // a shard is checked against the index when first opened: every tensor the index puts in it must be there
  async #openShard(path: string): Promise<SafetensorsFile> {
    const file = await SafetensorsFile.open(path);
    const missing = [...this.#fileOf].filter(([n, p]) => p === path && !file.has(n)).map(([n]) => n);
    if (missing.length > 0) {
      await file.close();
      const more = missing.length > 1 ? ` (and ${missing.length - 1} more)` : '';
      throw new CheckpointError(
        'missing-tensor',
        `${this.index ?? this.dir}: weight_map puts tensor ${JSON.stringify(missing[0])}${more} in ${basename(path)}, but that file has no such tensor`,
        { file: this.index ?? this.dir, field: 'weight_map' },
      );
    }
    return file;
  }
}

/** find and open the weights of the model directory `dir` (headers only; tensors are read on demand) */
export async function openCheckpoint(dir: string): Promise<Checkpoint> {
  const weights = locateWeights(dir);
  return weights.index ? new Checkpoint(dir, weights.fileOf, weights.index) : openFiles(dir, weights.files);
}

async function openFiles(dir: string, paths: readonly string[]): Promise<Checkpoint> {
  const opened: SafetensorsFile[] = [];
  const fileOf = new Map<string, string>();
  try {
    for (const path of paths) {
      const file = await SafetensorsFile.open(path);
      opened.push(file);
      for (const name of file.names()) {
        const other = fileOf.get(name);
        if (other !== undefined) {
          throw new CheckpointError('duplicate-tensor', `${path}: tensor ${JSON.stringify(name)} is in both ${basename(other)} and ${basename(path)}; expected each tensor in one file`, { file: path, field: name });
        }
        fileOf.set(name, path);
      }
    }
  } catch (e) {
    for (const f of opened) await f.close();
    throw e;
  }
  return new Checkpoint(dir, fileOf, undefined, opened);
}
