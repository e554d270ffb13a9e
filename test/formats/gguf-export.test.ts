// exportGguf on a small synthetic Llama (the example model's generator and tokenizer, 1 layer, hidden 256,
// intermediate 320): tensor names, types and fallbacks, the q/k permutation, the bytes read back, and the file
// parsed by an independent reader (@huggingface/gguf) — no ../shared, no llama.cpp.

import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gguf, serializeGgufMetadata } from '@huggingface/gguf';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { exportGguf, fallbackType, type GgufExportResult, type GgufWeightReader } from '../../src/formats/gguf/export.js';
import { ggufRowOrder, llama3RopeFactors, permuteRows } from '../../src/formats/gguf/llama.js';
import { GgufFile } from '../../src/formats/gguf/read.js';
import { TOKEN_TYPE, tokenizerMetadata } from '../../src/formats/gguf/tokenizer.js';
import { LLAMA_FAMILY } from '../../src/model/arch.js';
import { parseModelConfig, type ModelConfig } from '../../src/model/config.js';
import { GgufSource } from '../../src/model/gguf-source.js';
import { exampleConfigJson, exampleTensor } from '../../src/model/example-model.js';
import { exampleTokenizer } from '../../src/model/example-tokenizer.js';
import { decodeTensor, encodeTensor } from '../../src/quant/gguf-quantize.js';
import { GGML_TYPES } from '../../src/quant/gguf-types.js';

let dir: string;
let cfg: ModelConfig;
let reader: GgufWeightReader;

async function writeModel(root: string, overrides: Record<string, unknown>): Promise<ModelConfig> {
  const { tokenizer, config, vocabSize } = exampleTokenizer(512);
  const raw = { ...exampleConfigJson('tiny', vocabSize, 'f32'), hidden_size: 256, intermediate_size: 320, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 64, ...overrides };
  await writeFile(join(root, 'config.json'), JSON.stringify(raw));
  await writeFile(join(root, 'tokenizer.json'), JSON.stringify(tokenizer));
  await writeFile(join(root, 'tokenizer_config.json'), JSON.stringify(config));
  return parseModelConfig(raw);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qf-gguf-export-'));
  cfg = await writeModel(dir, {});
  reader = { dir, config: cfg, arch: LLAMA_FAMILY, tensor: async (name) => exampleTensor(cfg, 0, name) };
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('exportGguf', () => {
  let q4k: GgufExportResult;
  beforeAll(async () => {
    q4k = await exportGguf(reader, join(dir, 'q4k.gguf'), { type: 'Q4_K' });
  });

  test('names tensors as llama.cpp does and types them: Linear weights Q4_K where rows fit, llama.cpp’s fallback where not', () => {
    expect(q4k.tensors.map((t) => `${t.name} ${t.type} [${t.shape.join(',')}]`)).toEqual([
      'token_embd.weight F32 [512,256]',
      'blk.0.attn_norm.weight F32 [256]',
      'blk.0.ffn_norm.weight F32 [256]',
      'blk.0.attn_q.weight Q4_K [256,256]',
      'blk.0.attn_k.weight Q4_K [128,256]',
      'blk.0.attn_v.weight Q4_K [128,256]',
      'blk.0.attn_output.weight Q4_K [256,256]',
      'blk.0.ffn_gate.weight Q4_K [320,256]',
      'blk.0.ffn_up.weight Q4_K [320,256]',
      'blk.0.ffn_down.weight Q5_0 [256,320]',
      'output_norm.weight F32 [256]',
      'output.weight F32 [512,256]',
    ]);
    expect(q4k.fallbacks).toEqual([{ name: 'blk.0.ffn_down.weight', wanted: 'Q4_K', used: 'Q5_0', reason: expect.stringMatching(/320 columns are not a multiple of 256/) }]);
    expect(q4k.warnings).toEqual([]);
  });

  test('the file is the header plus each tensor’s block bytes, each padded to 32', async () => {
    const blockBytes = q4k.tensors.reduce((s, t) => s + Math.ceil(t.bytes / 32) * 32, 0);
    const attnQ = q4k.tensors.find((t) => t.name === 'blk.0.attn_q.weight')!;
    expect(attnQ.bytes).toBe(256 * (256 / 256) * 144); // 4.5 bits per weight
    const file = await GgufFile.open(q4k.path);
    await file.close();
    expect((await stat(q4k.path)).size).toBe(file.header.dataOffset + blockBytes);
    expect(q4k.bytes).toBe(file.header.dataOffset + blockBytes);
  });

  test('q/k rows are the converter’s permutation of the HF rows; v is not permuted', async () => {
    const file = await GgufFile.open(q4k.path);
    try {
      const q = exampleTensor(cfg, 0, 'model.layers.0.self_attn.q_proj.weight').data;
      const k = exampleTensor(cfg, 0, 'model.layers.0.self_attn.k_proj.weight').data;
      const v = exampleTensor(cfg, 0, 'model.layers.0.self_attn.v_proj.weight').data;
      expect(await file.bytes('blk.0.attn_q.weight')).toEqual(encodeTensor(GGML_TYPES.Q4_K, permuteRows(q, 256, 4), 256, 256));
      expect(await file.bytes('blk.0.attn_k.weight')).toEqual(encodeTensor(GGML_TYPES.Q4_K, permuteRows(k, 128, 2), 128, 256));
      expect(await file.bytes('blk.0.attn_v.weight')).toEqual(encodeTensor(GGML_TYPES.Q4_K, v, 128, 256));
      expect(await file.bytes('blk.0.attn_q.weight')).not.toEqual(encodeTensor(GGML_TYPES.Q4_K, q, 256, 256));
    } finally {
      await file.close();
    }
  });

  test('GgufSource reads back every tensor in HF names and row order, dequantized as ggml does', async () => {
    const src = await GgufSource.open(q4k.path);
    try {
      expect(src.config).toMatchObject({ hiddenSize: 256, intermediateSize: 320, numLayers: 1, numHeads: 4, numKvHeads: 2, headDim: 64, vocabSize: 512, tieWordEmbeddings: false });
      const name = 'model.layers.0.self_attn.q_proj.weight';
      const w = exampleTensor(cfg, 0, name).data;
      expect((await src.tensor(name)).data).toEqual(decodeTensor(GGML_TYPES.Q4_K, encodeTensor(GGML_TYPES.Q4_K, w, 256, 256), 256, 256));
      const layer = await src.layer(0);
      expect(Object.keys(layer).sort()).toEqual(LLAMA_FAMILY.layerTensors(cfg, 0).map((n) => n.replace('model.layers.0.', '')).sort());
      expect((await src.tensor('lm_head.weight')).data).toEqual(exampleTensor(cfg, 0, 'lm_head.weight').data);
    } finally {
      await src.close();
    }
  });

  test('@huggingface/gguf parses the file: version, metadata, tensor infos, offsets, alignment', async () => {
    const parsed = await gguf(q4k.path, { allowLocalFile: true, typedMetadata: true });
    const file = await GgufFile.open(q4k.path);
    await file.close();
    const m = parsed.metadata as Record<string, unknown>;
    expect(m['version']).toBe(3);
    expect(m['general.architecture']).toBe('llama');
    expect(m['general.alignment']).toBe(32);
    expect(m['general.file_type']).toBe(14);
    expect(m['llama.block_count']).toBe(1);
    expect(m['llama.embedding_length']).toBe(256);
    expect(m['llama.feed_forward_length']).toBe(320);
    expect(m['llama.attention.head_count']).toBe(4);
    expect(m['llama.attention.head_count_kv']).toBe(2);
    expect(m['llama.rope.dimension_count']).toBe(64);
    expect(m['llama.rope.freq_base']).toBe(10000);
    expect(m['llama.attention.layer_norm_rms_epsilon']).toBeCloseTo(1e-5, 10);
    expect(m['tokenizer.ggml.model']).toBe('llama');
    expect((m['tokenizer.ggml.tokens'] as string[]).length).toBe(512);
    expect(m['tokenizer.ggml.bos_token_id']).toBe(1);
    expect(parsed.typedMetadata['llama.context_length']).toEqual({ value: 512, type: 4 });
    expect(parsed.tensorDataOffset).toBe(BigInt(file.header.dataOffset));
    expect(parsed.tensorInfos.map((t) => [t.name, t.shape.map(Number), t.dtype, Number(t.offset)])).toEqual(
      file.header.tensors.map((t) => [t.name, [...t.shape].reverse(), t.type.id, t.offset]),
    );
    for (const t of parsed.tensorInfos) expect(Number(t.offset) % 32).toBe(0);
    // its own serializer writes our metadata section byte for byte
    const ours = readFileSync(q4k.path);
    const theirs = serializeGgufMetadata(parsed.typedMetadata, { alignment: 32 });
    const end = parsed.tensorInfoByteRange[0];
    expect(Buffer.from(theirs.subarray(0, end)).equals(ours.subarray(0, end))).toBe(true);
  });

  test('quantizeOutput on a tied model writes a quantized output.weight and keeps the embedding exact', async () => {
    const tiedDir = await mkdtemp(join(dir, 'tied-'));
    const tied = await writeModel(tiedDir, { tie_word_embeddings: true });
    const tiedReader = { dir: tiedDir, config: tied, arch: LLAMA_FAMILY, tensor: async (n: string) => exampleTensor(tied, 0, n) };
    const r = await exportGguf(tiedReader, join(tiedDir, 'm.gguf'), { type: 'Q8_0', quantizeOutput: true });
    const types = Object.fromEntries(r.tensors.map((t) => [t.name, t.type]));
    expect(types['token_embd.weight']).toBe('F32');
    expect(types['output.weight']).toBe('Q8_0');
    const plain = await exportGguf(tiedReader, join(tiedDir, 'p.gguf'), { type: 'Q8_0' });
    expect(plain.tensors.some((t) => t.name === 'output.weight')).toBe(false);
  });

  test('encode lets a method supply its own blocks for a weight', async () => {
    const seen: string[] = [];
    const r = await exportGguf(reader, join(dir, 'own.gguf'), {
      type: 'Q8_0',
      encode: (name, w, rows, cols, type) => {
        seen.push(`${name} ${type.name}`);
        return name.endsWith('v_proj.weight') ? new Uint8Array((rows * cols * 34) / 32) : undefined;
      },
    });
    expect(seen).toContain('model.layers.0.self_attn.v_proj.weight Q8_0');
    expect(seen.some((s) => s.includes('norm'))).toBe(false);
    const file = await GgufFile.open(r.path);
    expect((await file.bytes('blk.0.attn_v.weight')).every((b) => b === 0)).toBe(true);
    await file.close();
  });

  test('importance gives a weight ggml’s importance-weighted quantizer', async () => {
    const imp = Float32Array.from({ length: 256 }, (_, i) => 1 + (i % 7));
    const name = 'model.layers.0.self_attn.v_proj.weight';
    const r = await exportGguf(reader, join(dir, 'imp.gguf'), { type: 'Q4_0', importance: (n) => (n === name ? imp : undefined) });
    const file = await GgufFile.open(r.path);
    try {
      const v = exampleTensor(cfg, 0, name).data;
      expect(await file.bytes('blk.0.attn_v.weight')).toEqual(encodeTensor(GGML_TYPES.Q4_0, v, 128, 256, imp));
      expect(await file.bytes('blk.0.attn_v.weight')).not.toEqual(encodeTensor(GGML_TYPES.Q4_0, v, 128, 256));
    } finally {
      await file.close();
    }
  });

  test('refuses architectures and tokenizers it cannot convert', async () => {
    await expect(exportGguf({ ...reader, config: { ...cfg, modelType: 'qwen2' } }, join(dir, 'x.gguf'), { type: 'Q8_0' })).rejects.toThrow(/model_type "qwen2" is not exported/);
  });
});

describe('llama architecture details', () => {
  test('q/k rows of a head of 4 go [r0 r2 r1 r3] (worked example of llama.ts); inverse restores them', () => {
    expect(Array.from(ggufRowOrder(8, 2))).toEqual([0, 2, 1, 3, 4, 6, 5, 7]);
    const w = Float32Array.from({ length: 16 }, (_, i) => i);
    expect(Array.from(permuteRows(w, 8, 2))).toEqual([0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]);
    expect(permuteRows(permuteRows(w, 8, 2), 8, 2, true)).toEqual(w);
  });

  test('llama3 rope scaling becomes rope_freqs factors: 1 for high frequencies, the factor for low ones', () => {
    const base = { ...cfg, headDim: 128, ropeTheta: 500000 };
    expect(llama3RopeFactors(base)).toBeUndefined();
    const f = llama3RopeFactors({ ...base, ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 } })!;
    expect(f.length).toBe(64);
    expect(f[0]).toBe(1);
    expect(f[63]).toBe(8);
    for (let i = 1; i < 64; i++) expect(f[i]!).toBeGreaterThanOrEqual(f[i - 1]!);
  });

  test('a llama3-scaled model gets a rope_freqs.weight tensor', async () => {
    const scaled = { ...cfg, ropeScaling: { type: 'llama3' as const, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 64 } };
    const r = await exportGguf({ ...reader, config: scaled }, join(dir, 'rope.gguf'), { type: 'Q8_0' });
    const file = await GgufFile.open(r.path);
    try {
      expect(file.info('rope_freqs.weight').shape).toEqual([32]);
      expect(new Float32Array((await file.bytes('rope_freqs.weight')).buffer)).toEqual(llama3RopeFactors(scaled));
    } finally {
      await file.close();
    }
  });
});

describe('fallbackType', () => {
  test('follows llama.cpp: Q4_K → Q5_0, Q6_K → Q8_0, F16 when no 32-block fits', () => {
    expect(fallbackType('Q4_K', 768)).toEqual({ used: 'Q4_K' });
    expect(fallbackType('Q4_K', 288).used).toBe('Q5_0');
    expect(fallbackType('Q6_K', 64).used).toBe('Q8_0');
    expect(fallbackType('Q4_0', 172).used).toBe('F16');
    expect(fallbackType('Q4_K', 172).used).toBe('F16');
  });
});

describe('tokenizerMetadata', () => {
  test('scores follow merge ranks; types mark unknown, control and byte tokens', () => {
    const t = tokenizerMetadata(dir, 512);
    const tok = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as { model: { vocab: Record<string, number>; merges: string[] } };
    const [a, b] = tok.model.merges[0]!.split(' ');
    const first = tok.model.vocab[a! + b!]!;
    const [c, d] = tok.model.merges[5]!.split(' ');
    expect(t.scores[first]).toBe(0);
    expect(t.scores[tok.model.vocab[c! + d!]!]).toBe(-5);
    expect(Array.from(t.types.subarray(0, 4))).toEqual([TOKEN_TYPE.unknown, TOKEN_TYPE.control, TOKEN_TYPE.control, TOKEN_TYPE.byte]);
    expect(t.tokens[3 + 0x41]).toBe('<0x41>');
    const keys = Object.fromEntries(t.entries);
    expect(keys['tokenizer.ggml.add_bos_token']).toEqual({ type: 'bool', value: true });
    expect(keys['tokenizer.ggml.add_space_prefix']).toEqual({ type: 'bool', value: true });
    expect(keys['tokenizer.ggml.eos_token_id']).toEqual({ type: 'uint32', value: 2 });
  });

  test('refuses byte-level BPE and ids beyond the embedding', async () => {
    const bl = await mkdtemp(join(dir, 'bytelevel-'));
    await writeFile(join(bl, 'tokenizer.json'), JSON.stringify({ model: { type: 'BPE', vocab: { a: 0 }, merges: [] }, pre_tokenizer: { type: 'ByteLevel' } }));
    expect(() => tokenizerMetadata(bl, 1)).toThrow(/byte-level BPE/);
    expect(() => tokenizerMetadata(dir, 100)).toThrow(/outside the model's vocabulary of 100/);
  });
});
