// A GGUF file written by quantforge (formats/gguf/export.ts) as a WeightSource: every tensor dequantized
// to float32 exactly as llama.cpp's dequantize_row_<type> does, renamed back to HF names and, for q/k,
// permuted back to HF's row order. So quantforge evaluates and generates with the very weights llama.cpp
// loads from the file.

import { basename, dirname } from 'node:path';
import { GgufFile, GgufReadError } from '../formats/gguf/read.js';
import { llamaTensorName, permuteRows, permutedHeads } from '../formats/gguf/llama.js';
import type { GgufValue } from '../formats/gguf/values.js';
import { decodeTensor } from '../quant/gguf-quantize.js';
import type { ActQuant } from '../quant/module-quant.js';
import { tensor, type Tensor } from '../tensor.js';
import { archFor, type ArchAdapter } from './arch.js';
import { parseModelConfig, type ModelConfig } from './config.js';
import { readLayer, type WeightSource } from './source.js';

const num = (v: GgufValue | undefined): number | undefined => (v !== undefined && v.type !== 'array' && typeof v.value === 'number' ? v.value : undefined);

export class GgufSource implements WeightSource {
  readonly dir: string;
  readonly config: ModelConfig;
  readonly arch: ArchAdapter;
  readonly file: GgufFile;

  private constructor(file: GgufFile, config: ModelConfig) {
    this.file = file;
    this.dir = dirname(file.path);
    this.config = config;
    this.arch = archFor(config);
  }

  static async open(path: string): Promise<GgufSource> {
    const file = await GgufFile.open(path);
    try {
      const arch = file.get('general.architecture');
      if (arch?.type !== 'string' || arch.value !== 'llama') throw new GgufReadError(`${path}: general.architecture is ${JSON.stringify(arch?.type === 'string' ? arch.value : arch)}; GgufSource reads "llama" files`);
      if (file.has('rope_freqs.weight')) throw new GgufReadError(`${path}: rope_freqs (llama3 rope scaling) is not read back yet`);
      const k = (key: string) => num(file.get(`llama.${key}`));
      const raw: Record<string, unknown> = {
        model_type: 'llama',
        hidden_size: k('embedding_length'),
        intermediate_size: k('feed_forward_length'),
        num_hidden_layers: k('block_count'),
        num_attention_heads: k('attention.head_count'),
        num_key_value_heads: k('attention.head_count_kv'),
        head_dim: k('attention.key_length') ?? k('rope.dimension_count'),
        vocab_size: file.info('token_embd.weight').shape[0],
        max_position_embeddings: k('context_length'),
        rms_norm_eps: k('attention.layer_norm_rms_epsilon'),
        rope_theta: k('rope.freq_base'),
        tie_word_embeddings: !file.has('output.weight'),
        attention_bias: file.has('blk.0.attn_q.bias'),
        bos_token_id: num(file.get('tokenizer.ggml.bos_token_id')),
        eos_token_id: num(file.get('tokenizer.ggml.eos_token_id')),
      };
      return new GgufSource(file, parseModelConfig(raw, basename(path)));
    } catch (e) {
      await file.close();
      throw e;
    }
  }

  async tensor(name: string): Promise<Tensor<'float32'>> {
    const gguf = llamaTensorName(name);
    if (gguf === undefined || !this.file.has(gguf)) throw new GgufReadError(`${this.file.path}: no tensor for "${name}"`);
    const info = this.file.info(gguf);
    const [rows, cols] = info.shape.length === 2 ? [info.shape[0]!, info.shape[1]!] : [1, info.shape[0]!];
    let data = decodeTensor(info.type, await this.file.bytes(gguf), rows, cols);
    const heads = permutedHeads(name, this.config);
    if (heads !== undefined) data = permuteRows(data, info.shape[0]!, heads, true);
    return tensor('float32', info.shape, data);
  }

  layer(l: number): Promise<Record<string, Tensor<'float32'>>> {
    return readLayer(this, l);
  }

  actQuant(): ActQuant {
    return new Map();
  }

  async close(): Promise<void> {
    await this.file.close();
  }
}
