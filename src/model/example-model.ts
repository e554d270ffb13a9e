// The synthetic example model: a Llama-architecture HF directory generated deterministically from a seed, so the
// quick start works offline with nothing downloaded. Every tensor is drawn from its own PRNG stream (seed and
// tensor name), so any tensor can be produced alone, one at a time. A few hidden channels carry outliers (large
// RMSNorm weights, larger embedding columns), as in real LLMs, so SmoothQuant and AWQ have something to fix.

import type { LinearSpec } from './arch.js';
import { LLAMA_FAMILY } from './arch.js';
import { parseModelConfig, type ModelConfig } from './config.js';
import { tensor, type Tensor } from '../tensor.js';
import { seededRandom } from '../random.js';
import { exampleTokenizer } from './example-tokenizer.js';
import type { ExampleSize } from '../recipe/types.js';

let wordIdsMemo: number[] | undefined;
function exampleWordIds(): number[] {
  return (wordIdsMemo ??= exampleTokenizer(0).wordIds);
}

export const EXAMPLE_SIZES: readonly ExampleSize[] = ['tiny', '100m', '1b'];

interface Shape {
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  maxPositions: number;
}

const SHAPES: Record<ExampleSize, Shape> = {
  tiny: { hidden: 256, intermediate: 688, layers: 4, heads: 8, kvHeads: 4, maxPositions: 512 },
  '100m': { hidden: 768, intermediate: 2048, layers: 14, heads: 12, kvHeads: 4, maxPositions: 1024 },
  '1b': { hidden: 2048, intermediate: 5632, layers: 22, heads: 32, kvHeads: 4, maxPositions: 2048 },
};

/** config.json of the example model of `size` with the tokenizer's vocabulary size */
export function exampleConfigJson(size: ExampleSize, vocabSize: number, dtype: 'f32' | 'bf16'): Record<string, unknown> {
  const s = SHAPES[size];
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: s.hidden,
    intermediate_size: s.intermediate,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    head_dim: s.hidden / s.heads,
    vocab_size: vocabSize,
    max_position_embeddings: s.maxPositions,
    hidden_act: 'silu',
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    rope_scaling: null,
    attention_bias: false,
    mlp_bias: false,
    tie_word_embeddings: false,
    torch_dtype: dtype === 'bf16' ? 'bfloat16' : 'float32',
    bos_token_id: 1,
    eos_token_id: 2,
    use_cache: true,
  };
}

function hashName(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function normals(n: number, seed: number, name: string, std: number, mean = 0): Float32Array {
  const rand = seededRandom(hashName(seed, name));
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - rand()));
    const t = 2 * Math.PI * rand();
    out[i] = mean + std * r * Math.cos(t);
    if (i + 1 < n) out[i + 1] = mean + std * r * Math.sin(t);
  }
  return out;
}

/** the outlier channels: about one in 64, at least two, chosen by the seed */
export function outlierChannels(cfg: ModelConfig, seed: number): number[] {
  const rand = seededRandom(hashName(seed, 'outliers'));
  const count = Math.max(2, Math.floor(cfg.hiddenSize / 64));
  const set = new Set<number>();
  while (set.size < count) set.add(Math.floor(rand() * cfg.hiddenSize));
  return [...set].sort((a, b) => a - b);
}

/** one tensor of the example model, by its checkpoint name */
export function exampleTensor(cfg: ModelConfig, seed: number, name: string): Tensor<'float32'> {
  const H = cfg.hiddenSize;
  const outliers = outlierChannels(cfg, seed);
  const residualScale = 1 / Math.sqrt(2 * cfg.numLayers);
  if (name === 'model.embed_tokens.weight') {
    const w = normals(cfg.vocabSize * H, seed, name, 1);
    for (let v = 0; v < cfg.vocabSize; v++) for (const c of outliers) w[v * H + c] = (w[v * H + c] as number) * 4;
    return tensor('float32', [cfg.vocabSize, H], w);
  }
  if (name === 'lm_head.weight') {
    // whole-word rows get larger logits, so the model puts most of its mass on the words it samples its text from
    const w = normals(cfg.vocabSize * H, seed, name, 1 / Math.sqrt(H));
    for (const id of exampleWordIds()) for (let c = 0; c < H; c++) w[id * H + c] = (w[id * H + c] as number) * 4;
    return tensor('float32', [cfg.vocabSize, H], w);
  }
  if (name.endsWith('layernorm.weight') || name === 'model.norm.weight') {
    const w = normals(H, seed, name, 0.1, 1);
    if (name !== 'model.norm.weight') for (const c of outliers) w[c] = 8 + (w[c] as number);
    return tensor('float32', [H], w);
  }
  const local = name.replace(/^model\.layers\.\d+\./, '').replace(/\.weight$/, '');
  const spec: LinearSpec | undefined = LLAMA_FAMILY.layer(cfg, 0).linears.find((l) => l.local === local);
  if (!spec) throw new Error(`example model has no tensor "${name}"`);
  const residual = local === 'self_attn.o_proj' || local === 'mlp.down_proj';
  const std = (1 / Math.sqrt(spec.inFeatures)) * (residual ? residualScale : 1);
  return tensor('float32', [spec.outFeatures, spec.inFeatures], normals(spec.outFeatures * spec.inFeatures, seed, name, std));
}

/** tensor names in checkpoint order */
export function exampleTensorNames(cfg: ModelConfig): string[] {
  const names = [LLAMA_FAMILY.embedding];
  for (let l = 0; l < cfg.numLayers; l++) names.push(...LLAMA_FAMILY.layerTensors(cfg, l));
  names.push(LLAMA_FAMILY.finalNorm, 'lm_head.weight');
  return names;
}

export function exampleModelConfig(size: ExampleSize, vocabSize: number): ModelConfig {
  return parseModelConfig(exampleConfigJson(size, vocabSize, 'f32'), `example model (${size})`);
}
