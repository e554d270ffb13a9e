// The weights of a HuggingFace model directory, read one tensor at a time. Weight files are found as
// transformers finds them: `model.safetensors`, else `model.safetensors.index.json` (shards opened lazily,
// on the first read of one of their tensors), else every `*.safetensors` file present. Pickle weights are
// refused outright: loading them can execute arbitrary code.

import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { SafetensorsFile, type TensorInfo } from '../formats/safetensors.js';
import type { Tensor } from '../tensor.js';
import { InputError } from '../errors.js';
import { firstDuplicateKey } from '../formats/json-keys.js';

export type CheckpointErrorReason = 'no-weights' | 'pickle-refused' | 'index-invalid' | 'missing-shard' | 'missing-tensor' | 'tensor-not-found' | 'duplicate-tensor';

export class CheckpointError extends InputError<CheckpointErrorReason> {}

export interface CheckpointTensorInfo extends TensorInfo {
  /** absolute path of the .safetensors file holding the tensor */
  readonly file: string;
}

const SINGLE = 'model.safetensors';
const INDEX = 'model.safetensors.index.json';
const PICKLE = /^(pytorch_model.*\.bin|.*\.(pt|pth|ckpt|pkl))$/;

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
        { file: this.index ?? this.dir, field: `weight_map[${JSON.stringify(missing[0])}]` },
      );
    }
    return file;
  }
}

/** find and open the weights of the model directory `dir` (headers only; tensors are read on demand) */
export async function openCheckpoint(dir: string): Promise<Checkpoint> {
  const entries = await readdir(dir).catch((e: NodeJS.ErrnoException) => {
    throw new CheckpointError('no-weights', `${dir}: cannot list the model directory (${e.code ?? e.message}); expected a HuggingFace model directory`, { file: dir });
  });
  if (entries.includes(SINGLE)) return openFiles(dir, [join(dir, SINGLE)]);
  if (entries.includes(INDEX)) return openIndexed(dir, join(dir, INDEX));
  const safetensors = entries.filter((f) => f.endsWith('.safetensors')).sort();
  if (safetensors.length > 0) return openFiles(dir, safetensors.map((f) => join(dir, f)));
  const pickles = entries.filter((f) => PICKLE.test(f));
  if (pickles.length > 0) {
    throw new CheckpointError(
      'pickle-refused',
      `${dir}: found only pickle weights (${pickles.join(', ')}); quantforge never loads pickle files, because unpickling can execute arbitrary code. ` +
        `Convert them once, on a machine you trust: python -c "from transformers import AutoModelForCausalLM as M; ` +
        `M.from_pretrained('${dir}').save_pretrained('${dir}', safe_serialization=True)"`,
      { file: join(dir, pickles[0]!) },
    );
  }
  const found = entries.length === 0 ? 'the directory is empty' : `found ${entries.slice(0, 8).join(', ')}${entries.length > 8 ? ', …' : ''}`;
  throw new CheckpointError('no-weights', `${dir}: no weights; expected ${SINGLE}, ${INDEX} with its shards, or *.safetensors files; ${found}`, { file: dir });
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

/** an index file larger than this is not an index (a 405B-parameter model's is about 100 KB) */
const MAX_INDEX_BYTES = 64 << 20;

async function openIndexed(dir: string, index: string): Promise<Checkpoint> {
  const invalid = (what: string, field?: string) => new CheckpointError('index-invalid', `${index}: ${what}`, field === undefined ? { file: index } : { file: index, field });
  const size = await stat(index).then((s) => (s.isFile() ? s.size : -1), () => -1);
  if (size < 0) throw invalid('cannot be read; expected a JSON file');
  if (size > MAX_INDEX_BYTES) throw invalid(`has ${size} bytes, above the ${MAX_INDEX_BYTES}-byte limit for an index; expected {"metadata": {...}, "weight_map": {...}}`);
  let text: string;
  let raw: unknown;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(await readFile(index));
    raw = JSON.parse(text);
  } catch (e) {
    throw invalid(`is not UTF-8 JSON (${(e as Error).message})`);
  }
  const map = isObject(raw) ? raw['weight_map'] : undefined;
  if (!isObject(map)) throw invalid('has no "weight_map" object; expected {"metadata": {...}, "weight_map": {tensor name: shard file}}', 'weight_map');
  const dup = firstDuplicateKey(text);
  if (dup && dup.depth === 2 && dup.owner === 'weight_map') {
    throw new CheckpointError('duplicate-tensor', `${index}: weight_map lists tensor ${JSON.stringify(dup.key)} twice; expected each tensor in one shard`, { file: index, field: `weight_map[${JSON.stringify(dup.key)}]` });
  }
  const fileOf = new Map<string, string>();
  const namesIn = new Map<string, string[]>();
  for (const [name, file] of Object.entries(map)) {
    // a shard must sit beside the index: "../x" or "/etc/x" could read any file on the machine
    if (typeof file !== 'string' || file !== basename(file) || file === '..' || file === '.' || file === '' || file.includes('\\')) {
      throw invalid(`weight_map[${JSON.stringify(name)}] is ${JSON.stringify(file) ?? String(file)}; expected a file name in ${dir}`, `weight_map[${JSON.stringify(name)}]`);
    }
    fileOf.set(name, join(dir, file));
    namesIn.set(file, [...(namesIn.get(file) ?? []), name]);
  }
  for (const [file, names] of namesIn) {
    const ok = await stat(join(dir, file)).then((s) => s.isFile(), () => false);
    if (!ok) {
      const some = names.slice(0, 2).map((n) => JSON.stringify(n)).join(', ');
      throw new CheckpointError(
        'missing-shard',
        `${index}: weight_map puts ${names.length} tensor${names.length === 1 ? '' : 's'} (${some}${names.length > 2 ? ', …' : ''}) in ${file}, which does not exist in ${dir}`,
        { file: index, field: `weight_map[${JSON.stringify(names[0])}]` },
      );
    }
  }
  return new Checkpoint(dir, fileOf, index);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
