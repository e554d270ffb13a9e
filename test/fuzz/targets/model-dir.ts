// Fuzz targets: the files of a model directory besides the weights' bytes. A micro model (fixtures/micro-model.ts)
// is written once; each case rewrites one file with random mutations (json-mutation.ts), runs the readers a
// command would run, and puts the pristine file back.
//   config-json       config.json      → HfSource.open (config, model-dir check, checkpoint) + every tensor
//   tokenizer-json    tokenizer.json   → loadTokenizer + encode + decode
//   checkpoint-index  model.safetensors.index.json of a 3-shard model, plus deleted, truncated and duplicate
//                     shards → HfSource.open + every tensor

import fc from 'fast-check';
import { copyFileSync, existsSync, renameSync, truncateSync, writeFileSync } from 'node:fs';
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { SafetensorsWriter } from '../../../src/formats/safetensors.js';
import { HfSource } from '../../../src/model/source.js';
import { loadTokenizer } from '../../../src/model/tokenizer.js';
import { exampleTensor } from '../../../src/model/example-model.js';
import { MICRO_TEXT, writeMicroModel, type MicroModel } from '../../fixtures/micro-model.js';
import { namedReason, UnacceptableOutcome, type FuzzTarget } from '../harness.js';
import { applyJsonMutations, jsonMutation, weirdValue, type JsonMutation } from '../json-mutation.js';

interface DirContext {
  model: MicroModel;
  /** the pristine bytes of the file a case mutates */
  pristine: Buffer;
  original: unknown;
}

/** open the model as a step does and read every tensor */
async function readModel(dir: string): Promise<void> {
  const src = await HfSource.open(dir);
  try {
    await src.tensor(src.arch.embedding);
    for (let l = 0; l < src.config.numLayers; l++) await src.layer(l);
    await src.tensor(src.arch.finalNorm);
    await src.tensor(src.arch.lmHeadWeight(src.config));
  } finally {
    await src.close();
  }
}

async function outcome(run: () => Promise<unknown>, dir: string): Promise<string> {
  try {
    await run();
    return 'ok';
  } catch (e) {
    if (e instanceof UnacceptableOutcome) throw e;
    return namedReason(e, dir);
  }
}

const CONFIG_KEYS = [
  'model_type', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'head_dim',
  'vocab_size', 'max_position_embeddings', 'rms_norm_eps', 'rope_theta', 'rope_scaling', 'tie_word_embeddings', 'attention_bias',
  'hidden_act', 'mlp_bias', 'sliding_window', 'use_sliding_window', 'auto_map', 'bos_token_id', 'eos_token_id', 'quantization_config',
];

const ropeScaling = fc.constantFrom(
  { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 },
  { rope_type: 'llama3', factor: -1, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 },
  { rope_type: 'llama3', factor: 8 },
  { rope_type: 'yarn', factor: 4 },
  { type: 'default' },
  [1, 2],
);

export const configJsonTarget: FuzzTarget<JsonMutation[], DirContext> = {
  name: 'config-json',
  description: 'config.json of a model directory with keys deleted, renamed, retyped, huge or duplicated → HfSource.open + read every tensor',
  arbitrary: fc.array(fc.oneof({ weight: 9, arbitrary: jsonMutation(CONFIG_KEYS) }, { weight: 1, arbitrary: fc.record({ kind: fc.constant('set-key' as const), key: fc.constant('rope_scaling'), value: ropeScaling }) }), { minLength: 1, maxLength: 3 }),
  async setup(root) {
    const model = await writeMicroModel(join(root, 'model'));
    const pristine = await readFile(join(model.dir, 'config.json'));
    return { model, pristine, original: JSON.parse(pristine.toString('utf8')) as unknown };
  },
  async run(mutations, ctx) {
    const file = join(ctx.model.dir, 'config.json');
    writeFileSync(file, applyJsonMutations(ctx.original, mutations));
    try {
      return await outcome(() => readModel(ctx.model.dir), ctx.model.dir);
    } finally {
      writeFileSync(file, ctx.pristine);
    }
  },
};

const TOKENIZER_KEYS = ['model', 'normalizer', 'pre_tokenizer', 'post_processor', 'decoder', 'added_tokens', 'truncation', 'padding', 'version'];

const tokenizerParts = fc.oneof(
  fc.record({
    kind: fc.constant('set-key' as const),
    key: fc.constant('pre_tokenizer'),
    value: fc.constantFrom<unknown>(
      { type: 'Whitespace' },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
      { type: 'Split', pattern: { Regex: '(' }, behavior: 'Isolated', invert: false },
      { type: 'Split', pattern: { Regex: '\\s+' }, behavior: 'Removed', invert: false },
      { type: 'Split', pattern: { String: '' }, behavior: 'Isolated', invert: false },
      { type: 'Split', pattern: {}, behavior: 'Isolated', invert: false },
      { type: 'Replace', pattern: { string: ' ' }, content: '▁' },
      { type: 'Sequence', pretokenizers: [{ type: 'Nope' }] },
      { type: 'Nope' },
    ),
  }),
  fc.record({
    kind: fc.constant('set-key' as const),
    key: fc.constant('added_tokens'),
    value: fc.constantFrom<unknown>(
      [{ id: 1e9, content: 'the', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
      [{ id: -5, content: 'cat', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
      [{ id: 7, content: '', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
      [{ id: 'x', content: 'dog' }],
      [{ content: 'dog' }],
      'none',
    ),
  }),
  fc.record({
    kind: fc.constant('set-path' as const),
    keys: fc.constantFrom(['model', 'type'], ['model', 'unk_token'], ['model', 'byte_fallback'], ['model', 'merges'], ['model', 'vocab'], ['model', 'dropout']).map((k) => [...k]),
    value: fc.constantFrom<unknown>('WordPiece', 'Unigram', 'WordLevel', 'BPE', 'Nope', 7, null, [], ['a b', 'c'], { a: 1e9 }, { '▁the': -1 }, 1.5, 'x y z'),
  }),
);

export const tokenizerJsonTarget: FuzzTarget<JsonMutation[], DirContext> = {
  name: 'tokenizer-json',
  description: 'tokenizer.json with keys deleted, renamed, retyped, odd pre-tokenizers, added tokens with bad ids → loadTokenizer + encode + decode',
  arbitrary: fc.array(fc.oneof({ weight: 4, arbitrary: jsonMutation(TOKENIZER_KEYS) }, { weight: 1, arbitrary: tokenizerParts }), { minLength: 1, maxLength: 3 }),
  async setup(root) {
    const model = await writeMicroModel(join(root, 'model'));
    const pristine = await readFile(join(model.dir, 'tokenizer.json'));
    return { model, pristine, original: JSON.parse(pristine.toString('utf8')) as unknown };
  },
  async run(mutations, ctx) {
    const file = join(ctx.model.dir, 'tokenizer.json');
    writeFileSync(file, applyJsonMutations(ctx.original, mutations));
    try {
      return await outcome(async () => {
        const tok = loadTokenizer(ctx.model.dir);
        const ids = tok.encode(MICRO_TEXT.slice(0, 200));
        tok.decode(ids);
      }, ctx.model.dir);
    } finally {
      writeFileSync(file, ctx.pristine);
    }
  },
};

type ShardMutation =
  | { kind: 'delete-shard'; shard: number }
  | { kind: 'truncate-shard'; shard: number; at: number }
  | { kind: 'use-duplicate-shard' }
  | { kind: 'point-at'; tensor: number; shard: number };

interface IndexCase {
  index: JsonMutation[];
  shards: ShardMutation[];
}

interface IndexContext extends DirContext {
  shardNames: string[];
  tensorNames: string[];
}

const INDEX_KEYS = ['weight_map', 'metadata'];

const shardMutation: fc.Arbitrary<ShardMutation> = fc.oneof(
  fc.record({ kind: fc.constant('delete-shard' as const), shard: fc.nat({ max: 3 }) }),
  fc.record({ kind: fc.constant('truncate-shard' as const), shard: fc.nat({ max: 3 }), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
  fc.record({ kind: fc.constant('use-duplicate-shard' as const) }),
  fc.record({ kind: fc.constant('point-at' as const), tensor: fc.nat({ max: 30 }), shard: fc.nat({ max: 4 }) }),
);

export const checkpointIndexTarget: FuzzTarget<IndexCase, IndexContext> = {
  name: 'checkpoint-index',
  description: 'model.safetensors.index.json of a 3-shard model mutated; shards deleted, truncated, a tensor in two shards → HfSource.open + read every tensor',
  arbitrary: fc.record({
    index: fc.array(fc.oneof(jsonMutation(INDEX_KEYS), fc.record({ kind: fc.constant('set' as const), path: fc.tuple(fc.constant(1), fc.nat({ max: 30 })).map((p) => [...p]), value: weirdValue })), { maxLength: 2 }),
    shards: fc.array(shardMutation, { maxLength: 2 }),
  }),
  async setup(root) {
    const model = await writeMicroModel(join(root, 'model'), { maxShardBytes: 48_000 });
    if (model.files.length < 3) throw new Error(`expected ≥ 3 shards, got ${model.files.length}`);
    const pristine = await readFile(join(model.dir, 'model.safetensors.index.json'));
    const original = JSON.parse(pristine.toString('utf8')) as { weight_map: Record<string, string> };
    const shardNames = model.files.map((f) => basename(f));
    // a spare shard holding the second shard's tensors plus one of the first's: that tensor is then in two shards
    await mkdir(join(root, 'spare'));
    const spare = new SafetensorsWriter(join(root, 'spare'), { prefix: 'dup' });
    const first = Object.keys(original.weight_map).find((n) => original.weight_map[n] === shardNames[0])!;
    await spare.add(first, exampleTensor(model.config, 0, first));
    for (const [n, f] of Object.entries(original.weight_map)) if (f === shardNames[1]) await spare.add(n, exampleTensor(model.config, 0, n));
    const [dup] = (await spare.finish()).files;
    await copyFile(dup!, join(model.dir, 'dup.safetensors'));
    for (const f of model.files) await copyFile(f, join(root, `${basename(f)}.pristine`));
    return { model, pristine, original, shardNames, tensorNames: Object.keys(original.weight_map) };
  },
  async run(c, ctx) {
    const dir = ctx.model.dir;
    const indexFile = join(dir, 'model.safetensors.index.json');
    const original = structuredClone(ctx.original) as { weight_map: Record<string, string> };
    const touched = new Set<string>();
    for (const m of c.shards) {
      if (m.kind === 'use-duplicate-shard') {
        for (const [n, f] of Object.entries(original.weight_map)) if (f === ctx.shardNames[1]) original.weight_map[n] = 'dup.safetensors';
      } else if (m.kind === 'point-at') {
        const name = ctx.tensorNames[m.tensor % ctx.tensorNames.length]!;
        original.weight_map[name] = [...ctx.shardNames, 'dup.safetensors'][m.shard % (ctx.shardNames.length + 1)]!;
      } else {
        const shard = ctx.shardNames[m.shard % ctx.shardNames.length]!;
        touched.add(shard);
        // a second mutation of a shard already deleted has nothing to do
        if (!existsSync(join(dir, shard))) continue;
        if (m.kind === 'delete-shard') renameSync(join(dir, shard), join(dir, `${shard}.aside`));
        else truncateSync(join(dir, shard), Math.floor(m.at * 40_000));
      }
    }
    writeFileSync(indexFile, applyJsonMutations(original, c.index));
    try {
      return await outcome(() => readModel(dir), dir);
    } finally {
      writeFileSync(indexFile, ctx.pristine);
      for (const shard of touched) copyFileSync(join(dir, '..', `${shard}.pristine`), join(dir, shard));
    }
  },
};
