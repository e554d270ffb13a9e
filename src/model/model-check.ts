// A model directory checked before any compute, from headers alone (no tensor data is read): every
// safetensors header parses and its offsets fit its file's size (a truncated file fails here, not in a step
// minutes later), the index agrees with its shards (each listed tensor is in its shard, no tensor in two), and
// every tensor config.json implies is present with the shape it implies and a float dtype. The first problem
// is thrown as an InputError naming the file and the tensor or field.

import { statSync } from 'node:fs';
import { basename } from 'node:path';
import { readHeaderSync } from '../formats/safetensors-read.js';
import type { ParsedHeader } from '../formats/safetensors.js';
import { shapeString, type DType } from '../tensor.js';
import type { ArchAdapter } from './arch.js';
import type { ModelConfig } from './config.js';
import { CheckpointError, locateWeights } from './weight-files.js';

const FLOAT_DTYPES: readonly DType[] = ['float32', 'float16', 'bfloat16', 'float64'];

export interface ModelCheckOptions {
  /** a compressed-tensors checkpoint: Linear weights are stored packed, so only the other tensors are shape-checked */
  quantized?: boolean;
}

/** throws the first inconsistency of `dir` with its own files and with `config` (see the file comment) */
export function checkModelDir(dir: string, config: ModelConfig, arch: ArchAdapter, options: ModelCheckOptions = {}): void {
  const weights = locateWeights(dir);
  // tensor name → file holding it, from the headers
  const fileOf = new Map<string, string>();
  const headers = new Map<string, ParsedHeader>();
  for (const file of weights.files) {
    const header = cachedHeader(file);
    headers.set(file, header);
    for (const name of header.tensors.keys()) {
      const other = fileOf.get(name) ?? (weights.index ? weights.fileOf.get(name) : undefined);
      if (other !== undefined && other !== file) {
        throw new CheckpointError('duplicate-tensor', `${file}: tensor ${JSON.stringify(name)} is in both ${basename(other)} and ${basename(file)}; expected each tensor in one file`, { file, field: name });
      }
      fileOf.set(name, file);
    }
  }
  if (weights.index) {
    for (const [name, file] of weights.fileOf) {
      if (!headers.get(file)?.tensors.has(name)) {
        const field = `weight_map[${JSON.stringify(name)}]`;
        throw new CheckpointError('missing-tensor', `${weights.index}: ${field} puts the tensor in ${basename(file)}, but that file has no such tensor`, { file: weights.index, field });
      }
    }
  }
  for (const [name, shape] of expectedShapes(config, arch, options)) {
    const file = weights.index ? weights.fileOf.get(name) : fileOf.get(name);
    const info = file === undefined ? undefined : headers.get(file)?.tensors.get(name);
    if (file === undefined || info === undefined) {
      const where = weights.index ?? (weights.files.length === 1 ? weights.files[0]! : dir);
      throw new CheckpointError('missing-tensor', `${where}: tensor ${JSON.stringify(name)} is missing; config.json (${config.numLayers} layers, hidden_size ${config.hiddenSize}) implies it`, { file: where, field: name });
    }
    if (!FLOAT_DTYPES.includes(info.dtype)) {
      throw new CheckpointError('dtype-mismatch', `${file}: tensor ${JSON.stringify(name)} dtype is ${info.dtype}; expected a float dtype (${FLOAT_DTYPES.join(', ')})`, { file, field: name });
    }
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new CheckpointError(
        'shape-mismatch',
        `${file}: tensor ${JSON.stringify(name)} shape is ${shapeString(info.shape)}; config.json implies ${shapeString(shape)}`,
        { file, field: name },
      );
    }
  }
}

/** every tensor the forward reads, with the shape config.json gives it; lazy, so num_hidden_layers 10⁹ fails at layer 2, not out of memory */
function* expectedShapes(cfg: ModelConfig, arch: ArchAdapter, options: ModelCheckOptions): Generator<[string, number[]]> {
  const H = cfg.hiddenSize;
  yield [arch.embedding, [cfg.vocabSize, H]];
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = arch.layerPrefix(l);
    const spec = arch.layer(cfg, l);
    for (const n of spec.norms) yield [`${p}${n.local}`, [n.size]];
    if (options.quantized) continue;
    for (const lin of spec.linears) {
      yield [`${p}${lin.local}.weight`, [lin.outFeatures, lin.inFeatures]];
      if (lin.bias) yield [`${p}${lin.local}.bias`, [lin.outFeatures]];
    }
  }
  yield [arch.finalNorm, [H]];
  if (!options.quantized && !cfg.tieWordEmbeddings) yield [arch.lmHeadWeight(cfg), [cfg.vocabSize, H]];
}

// headers by path, size, mtime and inode: a sweep compiles one plan per variant, and every step reopens the model
const memo = new Map<string, ParsedHeader>();
const MEMO_ENTRIES = 64;

function cachedHeader(file: string): ParsedHeader {
  let key: string | undefined;
  try {
    const s = statSync(file);
    key = `${file}\0${s.size}\0${s.mtimeMs}\0${s.ino}`;
  } catch {
    // readHeaderSync names the problem
  }
  const hit = key === undefined ? undefined : memo.get(key);
  if (hit) return hit;
  const header = readHeaderSync(file);
  if (key !== undefined) {
    if (memo.size >= MEMO_ENTRIES) memo.delete(memo.keys().next().value!);
    memo.set(key, header);
  }
  return header;
}
