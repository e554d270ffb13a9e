// config.json of a HuggingFace decoder-only model directory (model_type in MODEL_TYPES), parsed strictly: every field quantforge's
// forward depends on is checked, and anything it would silently compute wrong is refused with a clear error.

import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ModelReason } from '../diag/failure.js';
import { causeText } from '../diag/quote.js';
import { bool, count, found, ModelConfigError, positive, parseRope, type RopeScaling } from './config-fields.js';
import { gemma3Features, LLAMA_FEATURES, mixtralFeatures, qwen3Features, qwen3MoeFeatures, type ArchFeatures } from './config-features.js';

export { ModelConfigError } from './config-fields.js';
export type { Rope, RopeScaling } from './config-fields.js';
export type { ArchFeatures, LocalAttention, MoeConfig } from './config-features.js';

export const MODEL_TYPES = ['llama', 'mistral', 'qwen2', 'qwen3', 'gemma3_text', 'mixtral', 'qwen3_moe'] as const;
export type ModelType = (typeof MODEL_TYPES)[number];

export interface ModelConfig {
  modelType: ModelType;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  maxPositions: number;
  rmsNormEps: number;
  /** the rope of every layer (Gemma 3: of its global layers; `features.local` has the local layers' own) */
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  tieWordEmbeddings: boolean;
  /** q/k/v carry biases (qwen2 always; llama, qwen3 and qwen3_moe with attention_bias) */
  qkvBias: boolean;
  /** o_proj carries a bias (llama with attention_bias) */
  oBias: boolean;
  /** mistral's (and mixtral's) sliding window; windows longer than this are refused at plan time */
  slidingWindow: number | null;
  bosTokenId: number | null;
  eosTokenId: number | null;
  /** what the layers compute beyond the Llama layout (LLAMA_FEATURES for llama, mistral, qwen2) */
  features: ArchFeatures;
  /** config.json as read, kept so outputs can copy it */
  raw: Record<string, unknown>;
}

/** config.json files are a few KB; one this large is not a config */
const MAX_CONFIG_BYTES = 16 << 20;

const PICKLE = /^(pytorch_model.*\.bin|.*\.pt|.*\.pth|.*\.ckpt|.*\.pkl)$/;

/** refuse directories that would need code execution (remote code, pickle weights) */
export function checkModelDirSafety(dir: string, raw: Record<string, unknown>): void {
  if ('auto_map' in raw) {
    const file = join(dir, 'config.json');
    throw new ModelConfigError('remote-code-refused', `${file}: field "auto_map" asks for custom (remote) model code; quantforge never executes code from a model directory`, { file, field: 'auto_map' });
  }
  const files = readdirSync(dir);
  if (!files.some((f) => f.endsWith('.safetensors'))) {
    const pickles = files.filter((f) => PICKLE.test(f));
    const hint = pickles.length > 0 ? `found only pickle weights (${pickles.join(', ')}), which can execute code when loaded; ` : '';
    throw new ModelConfigError(
      pickles.length > 0 ? 'pickle-refused' : 'no-weights',
      `${dir}: ${hint}quantforge reads only *.safetensors weights (convert with \`transformers\`' save_pretrained(safe_serialization=True) on a trusted machine)`,
      { file: dir },
    );
  }
}

/** model types HF uses for architectures quantforge does not read, with what to do instead */
const REFUSED_HINTS: Readonly<Record<string, string>> = {
  gemma3:
    'it is the multimodal Gemma3ForConditionalGeneration (text_config + vision tower); quantforge reads the text model, a Gemma3ForCausalLM directory with model_type "gemma3_text"',
};

function checkModelType(raw: Record<string, unknown>, file: string): ModelType {
  const modelType = raw['model_type'];
  if (MODEL_TYPES.includes(modelType as ModelType)) return modelType as ModelType;
  const hint = typeof modelType === 'string' ? REFUSED_HINTS[modelType] : undefined;
  throw new ModelConfigError(
    'unsupported-model-type',
    `${file}: model_type ${found(modelType)} is not supported${hint ? ` (${hint})` : ''}; supported: ${MODEL_TYPES.join(', ')}`,
    { file, field: 'model_type' },
  );
}

function featuresOf(modelType: ModelType, raw: Record<string, unknown>, file: string, numLayers: number, hidden: number): ArchFeatures {
  switch (modelType) {
    case 'qwen3':
      return qwen3Features();
    case 'gemma3_text':
      return gemma3Features(raw, file, numLayers, hidden);
    case 'mixtral':
      return mixtralFeatures(raw, file);
    case 'qwen3_moe':
      return qwen3MoeFeatures(raw, file, numLayers);
    default:
      return LLAMA_FEATURES;
  }
}

/** HF's default of each field that differs between the supported configuration classes */
const DEFAULTS: Readonly<Record<ModelType, { theta: number; tied: boolean; act: string; headDim?: number }>> = {
  llama: { theta: 10000, tied: false, act: 'silu' },
  mistral: { theta: 10000, tied: false, act: 'silu' },
  qwen2: { theta: 10000, tied: false, act: 'silu' },
  qwen3: { theta: 10000, tied: false, act: 'silu', headDim: 128 },
  gemma3_text: { theta: 1_000_000, tied: true, act: 'gelu_pytorch_tanh', headDim: 256 },
  mixtral: { theta: 1_000_000, tied: false, act: 'silu' },
  qwen3_moe: { theta: 10000, tied: false, act: 'silu' },
};

export function parseModelConfig(raw: Record<string, unknown>, file = 'config.json'): ModelConfig {
  const modelType = checkModelType(raw, file);
  const bad = (reason: ModelReason, name: string, message: string) => new ModelConfigError(reason, `${file}: ${message}`, { file, field: name });
  const d = DEFAULTS[modelType];
  const act = modelType === 'gemma3_text' ? d.act : (raw['hidden_act'] ?? d.act);
  if (act !== 'silu' && modelType !== 'gemma3_text') throw bad('unsupported-field', 'hidden_act', `hidden_act ${found(act)} is not supported; supported: "silu"`);
  if (raw['mlp_bias'] === true) throw bad('unsupported-field', 'mlp_bias', 'mlp_bias true is not supported');
  const numHeads = count(raw, file, 'num_attention_heads');
  const hiddenSize = count(raw, file, 'hidden_size');
  const numLayers = count(raw, file, 'num_hidden_layers');
  const numKvHeads = count(raw, file, 'num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw bad('bad-field', 'num_key_value_heads', `num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  }
  const headDim = count(raw, file, 'head_dim', d.headDim ?? hiddenSize / numHeads);
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw bad('bad-field', 'head_dim', `head_dim ${headDim} must be an even integer (hidden_size / num_attention_heads when absent)`);
  }
  const attentionBias = bool(raw, file, 'attention_bias', false);
  const useSliding = raw['use_sliding_window'] === true || modelType === 'mistral' || modelType === 'mixtral';
  const sw = raw['sliding_window'];
  if (useSliding && sw !== undefined && sw !== null) count(raw, file, 'sliding_window');
  const tokenId = (k: string): number | null => (Number.isSafeInteger(raw[k]) && (raw[k] as number) >= 0 ? (raw[k] as number) : null);
  const rope = parseRope(raw, file, d.theta, modelType === 'gemma3_text' ? 'full_attention' : undefined);
  return {
    modelType,
    hiddenSize,
    intermediateSize: count(raw, file, 'intermediate_size'),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: count(raw, file, 'vocab_size'),
    maxPositions: count(raw, file, 'max_position_embeddings', 2048),
    rmsNormEps: positive(raw, file, 'rms_norm_eps', 1e-6),
    ropeTheta: rope.theta,
    ropeScaling: rope.scaling,
    // LlamaConfig, MistralConfig, Qwen2/3Config and MixtralConfig default to untied embeddings, Gemma3TextConfig to tied
    tieWordEmbeddings: bool(raw, file, 'tie_word_embeddings', d.tied),
    qkvBias: modelType === 'qwen2' ? true : modelType === 'mixtral' ? false : attentionBias,
    oBias: modelType === 'llama' || modelType === 'qwen3' || modelType === 'qwen3_moe' || modelType === 'gemma3_text' ? attentionBias : false,
    slidingWindow: useSliding && typeof sw === 'number' ? sw : null,
    bosTokenId: tokenId('bos_token_id'),
    eosTokenId: tokenId('eos_token_id'),
    features: featuresOf(modelType, raw, file, numLayers, hiddenSize),
    raw,
  };
}

/** read and parse `<dir>/config.json`, refusing unsafe directories */
export function readModelConfig(dir: string): ModelConfig {
  const raw = readConfigJson(dir);
  checkModelDirSafety(dir, raw);
  return parseModelConfig(raw, join(dir, 'config.json'));
}

/** the JSON object in `<dir>/config.json`, unchecked beyond being one (an ONNX export has no safetensors to check) */
export function readConfigJson(dir: string): Record<string, unknown> {
  const file = join(dir, 'config.json');
  let bytes: Buffer;
  try {
    const size = statSync(file).size;
    if (size > MAX_CONFIG_BYTES) throw new ModelConfigError('bad-config', `${file}: has ${size} bytes; a config.json is a few KB (limit ${MAX_CONFIG_BYTES})`, { file });
    bytes = readFileSync(file);
  } catch (e) {
    if (e instanceof ModelConfigError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ModelConfigError('missing-config', `${dir}: no config.json; expected a HuggingFace model directory`, { file });
    throw new ModelConfigError('bad-config', `${file}: cannot be read (${code ?? causeText(e)})`, { file });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw new ModelConfigError('bad-config', `${file}: not valid UTF-8 JSON (${causeText(e)})`, { file });
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ModelConfigError('bad-config', `${file}: expected a JSON object, found ${found(raw)}`, { file });
  }
  return raw as Record<string, unknown>;
}
