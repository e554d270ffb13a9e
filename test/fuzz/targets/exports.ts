// Fuzz targets: the two formats quantforge writes and reads back (`eval`, `generate`), tampered.
//   compressed-tensors  one of seven micro checkpoints (int4 with zero points, int4 with act-order g_idx, W8A8,
//                       FP8 with input_scale, FP8_BLOCK, NVFP4 with global scales, MXFP4A16):
//                       quantization_config fields retyped or out of range, quantized tensors deleted, reshaped,
//                       retyped or given NaN/Inf/out-of-range values → CompressedTensorsSource.open + every layer
//   onnx                the micro int4 export: model.onnx and model.onnx_data truncated or with bytes changed,
//                       the data file deleted, config.json disagreeing → openModel + a forward and perplexity
// The exports are built once (fixtures/micro-exports.ts); each case writes a tampered copy and reads it.

import fc from 'fast-check';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeHeader } from '../../../src/formats/safetensors-header.js';
import { SafetensorsFile } from '../../../src/formats/safetensors.js';
import { CompressedTensorsSource } from '../../../src/model/compressed-tensors-source.js';
import { openModel } from '../../../src/outputs/open.js';
import { Runtime } from '../../../src/ort/session.js';
import { bytesOf, tensor, type DType, type Tensor } from '../../../src/tensor.js';
import { writeMicroExports, type MicroExports } from '../../fixtures/micro-exports.js';
import { namedReason, UnacceptableOutcome, type FuzzTarget } from '../harness.js';
import { applyJsonMutations, weirdValue, type JsonMutation } from '../json-mutation.js';

let built: Promise<MicroExports> | undefined;
/** the micro exports, built once per test process (both targets share them) and removed when it exits */
export function microExports(): Promise<MicroExports> {
  if (!built) {
    const dir = mkdtempSync(join(tmpdir(), 'qf-fuzz-exports-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    built = writeMicroExports(dir);
  }
  return built;
}

/** a safetensors file's bytes, written in one synchronous call (the writer's fsync per case is slow) */
function safetensorsBytes(tensors: readonly [string, Tensor][]): Uint8Array {
  let offset = 0;
  const entries = tensors.map(([name, t]) => {
    const entry = { name, dtype: t.dtype, shape: t.dims, begin: offset, end: offset + t.data.byteLength };
    offset = entry.end;
    return entry;
  });
  const header = encodeHeader(entries, { format: 'pt' });
  const out = new Uint8Array(header.length + offset);
  out.set(header);
  for (const [i, [, t]] of tensors.entries()) out.set(bytesOf(t), header.length + entries[i]!.begin);
  return out;
}

const SIDE_FILES = ['tokenizer.json', 'tokenizer_config.json'];

async function outcome(run: () => Promise<unknown>, dir: string): Promise<string> {
  try {
    await run();
    return 'ok';
  } catch (e) {
    if (e instanceof UnacceptableOutcome) throw e;
    return namedReason(e, dir);
  }
}

// ---------------------------------------------------------------- compressed-tensors

export type TensorMutation =
  | { kind: 'delete'; tensor: number }
  | { kind: 'reshape'; tensor: number; dims: number[] }
  | { kind: 'retype'; tensor: number; dtype: DType }
  | { kind: 'values'; tensor: number; value: number; at: number[] };

export interface CtCase {
  checkpoint: number;
  config: JsonMutation[];
  tensors: TensorMutation[];
}

const QC = ['quantization_config'];
const ARGS = ['num_bits', 'type', 'symmetric', 'group_size', 'strategy', 'block_structure', 'dynamic', 'actorder', 'scale_dtype'];

const configMutation: fc.Arbitrary<JsonMutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('set-path' as const), keys: fc.tuple(fc.constantFrom('weights', 'input_activations'), fc.constantFrom(...ARGS)).map(([role, k]) => [...QC, 'config_groups', 'group_0', role, k]), value: fc.oneof(weirdValue, fc.constantFrom<unknown>(3, 4, 8, 9, 16, 32, 'int', 'float', 'group', 'channel', 'tensor', 'token', 'block', 'tensor_group', 'local', [128, 128], [0, 3], 'torch.uint8', 7, 31, 'weight')) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('set-path' as const), keys: fc.constantFrom(['config_groups'], ['ignore'], ['config_groups', 'group_0', 'targets'], ['config_groups', 'group_0', 'weights'], ['config_groups', 'group_0'], ['quant_method'], ['format']).map((k) => [...QC, ...k]), value: fc.oneof(weirdValue, fc.constantFrom<unknown>(['re:('], ['re:.*'], ['Linear', 're:model.layers.0.*'], ['lm_head'], 'Linear', ['Embedding'], { g: { targets: ['Linear'], weights: null } })) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('set-key' as const), key: fc.constantFrom('hidden_size', 'num_hidden_layers', 'intermediate_size', 'num_key_value_heads', 'vocab_size', 'tie_word_embeddings'), value: weirdValue }) },
);

const tensorIndex = fc.nat({ max: 200 });
const tensorMutation: fc.Arbitrary<TensorMutation> = fc.oneof(
  fc.record({ kind: fc.constant('delete' as const), tensor: tensorIndex }),
  fc.record({ kind: fc.constant('reshape' as const), tensor: tensorIndex, dims: fc.array(fc.nat({ max: 70 }), { minLength: 0, maxLength: 3 }) }),
  fc.record({ kind: fc.constant('retype' as const), tensor: tensorIndex, dtype: fc.constantFrom<DType>('float32', 'float16', 'bfloat16', 'int32', 'int64', 'int8', 'uint8', 'float64', 'float8e4m3fn') }),
  fc.record({
    kind: fc.constant('values' as const),
    tensor: tensorIndex,
    value: fc.constantFrom(Number.NaN, Infinity, -Infinity, 0, -1, 1e38, 2 ** 31 - 1, -(2 ** 31), 65, 1e9, 3),
    at: fc.array(fc.nat({ max: 10_000 }), { minLength: 1, maxLength: 3 }),
  }),
);

interface CtContext {
  exports: MicroExports;
  work: string;
  checkpoints: { dir: string; config: unknown; tensors: [string, Tensor][] }[];
}

function mutateTensor(t: Tensor, m: TensorMutation): Tensor | undefined {
  if (m.kind === 'delete') return undefined;
  const n = t.data.length;
  if (m.kind === 'reshape') {
    const count = m.dims.reduce((a, b) => a * b, 1);
    const Ctor = t.data.constructor as new (n: number) => Tensor['data'];
    const data = new Ctor(count);
    for (let i = 0; i < Math.min(count, n); i++) (data as unknown as number[])[i] = (t.data as unknown as number[])[i]!;
    return tensor(t.dtype, m.dims, data as never);
  }
  if (m.kind === 'retype') {
    const ctors: Record<DType, new (n: number) => Tensor['data']> = {
      float32: Float32Array, float64: Float64Array, float16: Uint16Array, bfloat16: Uint16Array, int64: BigInt64Array, int32: Int32Array, int16: Int16Array, int8: Int8Array, uint8: Uint8Array, bool: Uint8Array, float8e4m3fn: Uint8Array,
    };
    const data = new ctors[m.dtype](n);
    for (let i = 0; i < n; i++) {
      const v = Number((t.data as unknown as (number | bigint)[])[i]);
      (data as unknown as (number | bigint)[])[i] = data instanceof BigInt64Array ? BigInt(Math.trunc(Number.isFinite(v) ? v : 0)) : v;
    }
    return tensor(m.dtype, t.dims, data as never);
  }
  if (n === 0) return t;
  const data = t.data.slice() as Tensor['data'];
  for (const at of m.at) {
    const i = at % n;
    if (data instanceof BigInt64Array) data[i] = BigInt(Number.isFinite(m.value) ? Math.trunc(m.value) : 0);
    else if (data instanceof Uint16Array) data[i] = Number.isNaN(m.value) ? 0x7fc0 : m.value === Infinity ? 0x7f80 : m.value === -Infinity ? 0xff80 : m.value & 0xffff;
    else (data as Float32Array)[i] = m.value;
  }
  return tensor(t.dtype, t.dims, data as never);
}

export const compressedTensorsTarget: FuzzTarget<CtCase, CtContext> = {
  name: 'compressed-tensors',
  description: 'compressed-tensors checkpoints (int4 asym, int4 act-order, W8A8, FP8, FP8_BLOCK, NVFP4, MXFP4A16) with quantization_config and quantized tensors tampered → CompressedTensorsSource.open + every layer',
  arbitrary: fc.record({
    checkpoint: fc.nat({ max: 6 }),
    config: fc.array(configMutation, { maxLength: 2 }),
    tensors: fc.array(tensorMutation, { maxLength: 2 }),
  }),
  async setup(root) {
    const exports = await microExports();
    const checkpoints: CtContext['checkpoints'] = [];
    for (const dir of Object.values(exports.compressedTensors)) {
      const f = await SafetensorsFile.open(join(dir, 'model.safetensors'));
      const tensors: [string, Tensor][] = [];
      try {
        // quantized tensors first, so small indices pick them
        const names = [...f.tensors.keys()].sort((a, b) => Number(/weight_|\.weight$/.test(b) && !b.includes('norm')) - Number(/weight_|\.weight$/.test(a) && !a.includes('norm')));
        for (const n of names) tensors.push([n, await f.read(n)]);
      } finally {
        await f.close();
      }
      checkpoints.push({ dir, config: JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as unknown, tensors });
    }
    const work = join(root, 'ct-case');
    mkdirSync(work, { recursive: true });
    for (const f of SIDE_FILES) copyFileSync(join(checkpoints[0]!.dir, f), join(work, f));
    return { exports, work, checkpoints };
  },
  async run(c, ctx) {
    const ck = ctx.checkpoints[c.checkpoint % ctx.checkpoints.length]!;
    writeFileSync(join(ctx.work, 'config.json'), applyJsonMutations(ck.config, c.config));
    let tensors = ck.tensors;
    if (c.tensors.length > 0) {
      tensors = [...tensors];
      for (const m of c.tensors) {
        const i = m.tensor % tensors.length;
        const changed = mutateTensor(tensors[i]![1], m);
        if (changed) tensors[i] = [tensors[i]![0], changed];
        else tensors.splice(i, 1);
      }
      writeFileSync(join(ctx.work, 'model.safetensors'), safetensorsBytes(tensors));
    } else copyFileSync(join(ck.dir, 'model.safetensors'), join(ctx.work, 'model.safetensors'));
    return outcome(async () => {
      const src = await CompressedTensorsSource.open(ctx.work);
      try {
        await src.tensor(src.arch.embedding);
        for (let l = 0; l < src.config.numLayers; l++) await src.layer(l);
        await src.tensor(src.arch.finalNorm);
        await src.tensor(src.arch.lmHeadWeight(src.config));
      } finally {
        await src.close();
      }
    }, ctx.work);
  },
};

// ---------------------------------------------------------------- onnx

export type OnnxMutation =
  | { kind: 'flip'; file: 'model' | 'data'; at: number; byte: number }
  | { kind: 'truncate'; file: 'model' | 'data'; at: number }
  | { kind: 'delete-data' }
  | { kind: 'config'; key: string; value: unknown };

interface OnnxContext {
  exports: MicroExports;
  work: string;
  model: Buffer;
  data: Buffer;
  config: unknown;
  runtime: Runtime;
}

const onnxMutation: fc.Arbitrary<OnnxMutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('flip' as const), file: fc.constantFrom('model' as const, 'data' as const), at: fc.double({ min: 0, max: 1, noNaN: true }), byte: fc.nat({ max: 255 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('truncate' as const), file: fc.constantFrom('model' as const, 'data' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete-data' as const) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('config' as const), key: fc.constantFrom('num_hidden_layers', 'num_key_value_heads', 'head_dim', 'vocab_size', 'hidden_size', 'max_position_embeddings', 'eos_token_id'), value: fc.oneof(weirdValue, fc.constantFrom(1, 2, 3, 4, 8, 16, 64)) }) },
);

export const onnxTarget: FuzzTarget<OnnxMutation[], OnnxContext> = {
  name: 'onnx',
  description: 'the micro int4 ONNX export with model.onnx / model.onnx_data truncated, bytes changed or deleted, config.json disagreeing → openModel + forward + perplexity',
  arbitrary: fc.array(onnxMutation, { minLength: 1, maxLength: 3 }),
  async setup(root) {
    const exports = await microExports();
    const work = join(root, 'onnx-case');
    mkdirSync(join(work, 'onnx'), { recursive: true });
    for (const f of SIDE_FILES) copyFileSync(join(exports.onnx, f), join(work, f));
    return {
      exports,
      work,
      model: readFileSync(join(exports.onnx, 'onnx', 'model.onnx')),
      data: readFileSync(join(exports.onnx, 'onnx', 'model.onnx_data')),
      config: JSON.parse(readFileSync(join(exports.onnx, 'config.json'), 'utf8')) as unknown,
      runtime: new Runtime({ device: 'cpu', threads: 1 }),
    };
  },
  async run(mutations, ctx) {
    let model: Buffer = Buffer.from(ctx.model);
    let data: Buffer | undefined = Buffer.from(ctx.data);
    const config: JsonMutation[] = [];
    for (const m of mutations) {
      if (m.kind === 'config') config.push({ kind: 'set-key', key: m.key, value: m.value });
      else if (m.kind === 'delete-data') data = undefined;
      else {
        const target = m.file === 'model' ? model : data;
        if (!target || target.length === 0) continue;
        const at = Math.min(target.length - 1, Math.floor(m.at * target.length));
        if (m.kind === 'flip') target[at] = m.byte;
        else if (m.file === 'model') model = model.subarray(0, at);
        else data = data!.subarray(0, at);
      }
    }
    writeFileSync(join(ctx.work, 'onnx', 'model.onnx'), model);
    if (data) writeFileSync(join(ctx.work, 'onnx', 'model.onnx_data'), data);
    else rmSync(join(ctx.work, 'onnx', 'model.onnx_data'), { force: true });
    writeFileSync(join(ctx.work, 'config.json'), applyJsonMutations(ctx.config, config));
    return outcome(async () => {
      const m = await openModel(ctx.runtime, ctx.work);
      try {
        await m.generate([1, 5, 9], 2);
        await m.perplexity(tensor('int32', [1, 8], Int32Array.of(1, 5, 9, 12, 30, 2, 7, 8)));
      } finally {
        await m.close();
      }
    }, ctx.work);
  },
  async teardown(ctx) {
    await ctx.runtime.close();
  },
};
