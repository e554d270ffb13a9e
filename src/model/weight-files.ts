// Which files hold a model directory's weights, found as transformers finds them: `model.safetensors`, else
// `model.safetensors.index.json` and the shards its weight_map names, else every `*.safetensors` file present.
// Pickle weights are refused outright: loading them can execute arbitrary code. Synchronous and header-free,
// so the planner (model-check.ts) and the lazy reader (checkpoint.ts) share it.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { InputError, type ModelReason } from '../diag/failure.js';
import { causeText } from '../diag/quote.js';
import { firstDuplicateKey } from '../formats/json-keys.js';

/** a model directory's weights that cannot be found or read as they must be (reasons: ModelReason) */
export class CheckpointError extends InputError<ModelReason> {}

export const SINGLE = 'model.safetensors';
export const INDEX = 'model.safetensors.index.json';
const PICKLE = /^(pytorch_model.*\.bin|.*\.(pt|pth|ckpt|pkl))$/;

/** an index file larger than this is not an index (a 405B-parameter model's is about 100 KB) */
const MAX_INDEX_BYTES = 64 << 20;

export type WeightFiles =
  | { readonly index: undefined; readonly files: readonly string[] }
  | {
      readonly index: string;
      /** the shards the index names, sorted */
      readonly files: readonly string[];
      /** tensor name → shard path, as the index's weight_map says */
      readonly fileOf: ReadonlyMap<string, string>;
    };

/** the weight files of `dir` (absolute paths); throws CheckpointError when there are none usable */
export function locateWeights(dir: string): WeightFiles {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? causeText(e);
    throw new CheckpointError('no-weights', `${dir}: cannot list the model directory (${code}); expected a HuggingFace model directory`, { file: dir });
  }
  if (entries.includes(SINGLE)) return { index: undefined, files: [join(dir, SINGLE)] };
  if (entries.includes(INDEX)) {
    const index = join(dir, INDEX);
    const fileOf = readIndex(dir, index);
    return { index, files: [...new Set(fileOf.values())].sort(), fileOf };
  }
  const safetensors = entries.filter((f) => f.endsWith('.safetensors')).sort();
  if (safetensors.length > 0) return { index: undefined, files: safetensors.map((f) => join(dir, f)) };
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

/** the index's weight_map (tensor → shard path), every shard a file beside the index */
function readIndex(dir: string, index: string): Map<string, string> {
  const invalid = (what: string, field?: string) => new CheckpointError('index-invalid', `${index}: ${what}`, field === undefined ? { file: index } : { file: index, field });
  let text: string;
  let raw: unknown;
  try {
    const size = statSync(index).size;
    if (size > MAX_INDEX_BYTES) throw new Error(`${size} bytes, above the ${MAX_INDEX_BYTES}-byte limit for an index`);
    text = new TextDecoder('utf-8', { fatal: true }).decode(readFileSync(index));
    raw = JSON.parse(text);
  } catch (e) {
    throw invalid(`is not an index (${causeText(e)}); expected UTF-8 JSON {"metadata": {...}, "weight_map": {tensor name: shard file}}`);
  }
  const map = isObject(raw) ? raw['weight_map'] : undefined;
  if (!isObject(map)) throw invalid('has no "weight_map" object; expected {"metadata": {...}, "weight_map": {tensor name: shard file}}', 'weight_map');
  const dup = firstDuplicateKey(text);
  if (dup && dup.depth === 2 && dup.owner === 'weight_map') {
    const field = `weight_map[${JSON.stringify(dup.key)}]`;
    throw new CheckpointError('duplicate-tensor', `${index}: weight_map lists tensor ${JSON.stringify(dup.key)} twice; expected each tensor in one shard`, { file: index, field });
  }
  const fileOf = new Map<string, string>();
  const namesIn = new Map<string, string[]>();
  for (const [name, file] of Object.entries(map)) {
    // a shard must sit beside the index: "../x" or "/etc/x" could read any file on the machine
    if (typeof file !== 'string' || file !== basename(file) || file === '..' || file === '.' || file === '' || file.includes('\\')) {
      const field = `weight_map[${JSON.stringify(name)}]`;
      throw invalid(`${field} is ${JSON.stringify(file)}; expected a file name in ${dir}`, field);
    }
    fileOf.set(name, join(dir, file));
    namesIn.set(file, [...(namesIn.get(file) ?? []), name]);
  }
  for (const [file, names] of namesIn) {
    const ok = isFile(join(dir, file));
    if (!ok) {
      const some = names.slice(0, 2).map((n) => JSON.stringify(n)).join(', ');
      throw new CheckpointError(
        'missing-shard',
        `${index}: weight_map puts ${names.length} tensor${names.length === 1 ? '' : 's'} (${some}${names.length > 2 ? ', …' : ''}) in ${file}, which does not exist in ${dir}`,
        { file: index, field: 'weight_map' },
      );
    }
  }
  return fileOf;
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
