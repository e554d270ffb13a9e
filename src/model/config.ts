// config.json of a HuggingFace Llama-family model directory, parsed strictly: every field quantforge's
// forward depends on is checked, and anything it would silently compute wrong is refused with a clear error.

import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { InputError, type ModelReason } from '../diag/failure.js';
import { causeText, describeValue } from '../diag/quote.js';

export const MODEL_TYPES = ['llama', 'mistral', 'qwen2'] as const;
export type ModelType = (typeof MODEL_TYPES)[number];

export interface RopeScaling {
  type: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositions: number;
}

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
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  tieWordEmbeddings: boolean;
  /** q/k/v carry biases (qwen2 always; llama with attention_bias) */
  qkvBias: boolean;
  /** o_proj carries a bias (llama with attention_bias) */
  oBias: boolean;
  /** mistral's sliding window; windows longer than this are refused at plan time */
  slidingWindow: number | null;
  bosTokenId: number | null;
  eosTokenId: number | null;
  /** config.json as read, kept so outputs can copy it */
  raw: Record<string, unknown>;
}

export class ModelConfigError extends InputError<ModelReason> {}

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

type FieldKind = 'int' | 'count' | 'positive' | 'number' | 'bool';

const KIND_WORDS: Record<FieldKind, string> = {
  int: 'an integer',
  count: 'a positive integer',
  positive: 'a positive number',
  number: 'a number',
  bool: 'a boolean',
};

function fits(v: unknown, kind: FieldKind): boolean {
  if (kind === 'bool') return typeof v === 'boolean';
  if (typeof v !== 'number' || !Number.isFinite(v)) return false;
  if (kind === 'int') return Number.isSafeInteger(v);
  if (kind === 'count') return Number.isSafeInteger(v) && v >= 1;
  return kind === 'number' || v > 0;
}

/** `raw[name]` checked against `kind`; `path` names the object inside config.json (`rope_scaling`) */
function field(raw: Record<string, unknown>, file: string, name: string, kind: FieldKind, fallback?: number | boolean, path = ''): number | boolean {
  const v = raw[name];
  const at = `${path}${name}`;
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new ModelConfigError('missing-field', `${file}: required field "${at}" is missing`, { file, field: at });
  }
  if (!fits(v, kind)) {
    throw new ModelConfigError('bad-field', `${file}: field "${at}" should be ${KIND_WORDS[kind]}, found ${found(v)}`, { file, field: at });
  }
  return v as number | boolean;
}

const found = (v: unknown): string => describeValue(v);

function parseRopeScaling(raw: Record<string, unknown>, file: string): RopeScaling | null {
  const rs = raw['rope_scaling'];
  if (rs === undefined || rs === null) return null;
  if (typeof rs !== 'object' || Array.isArray(rs)) {
    throw new ModelConfigError('bad-field', `${file}: field "rope_scaling" should be an object or null, found ${found(rs)}`, { file, field: 'rope_scaling' });
  }
  const o = rs as Record<string, unknown>;
  const type = o['rope_type'] ?? o['type'];
  if (type === 'default') return null;
  if (type !== 'llama3') {
    throw new ModelConfigError('unsupported-field', `${file}: rope_scaling.rope_type ${found(type)} is not supported; supported: "llama3" (or null)`, { file, field: 'rope_scaling.rope_type' });
  }
  const p = 'rope_scaling.';
  return {
    type: 'llama3',
    factor: field(o, file, 'factor', 'positive', undefined, p) as number,
    lowFreqFactor: field(o, file, 'low_freq_factor', 'positive', undefined, p) as number,
    highFreqFactor: field(o, file, 'high_freq_factor', 'positive', undefined, p) as number,
    originalMaxPositions: field(o, file, 'original_max_position_embeddings', 'count', undefined, p) as number,
  };
}

export function parseModelConfig(raw: Record<string, unknown>, file = 'config.json'): ModelConfig {
  const bad = (reason: ModelReason, name: string, message: string) => new ModelConfigError(reason, `${file}: ${message}`, { file, field: name });
  const modelType = raw['model_type'];
  if (!MODEL_TYPES.includes(modelType as ModelType)) {
    throw bad('unsupported-model-type', 'model_type', `model_type ${found(modelType)} is not supported; supported: ${MODEL_TYPES.join(', ')}`);
  }
  const act = raw['hidden_act'] ?? 'silu';
  if (act !== 'silu') throw bad('unsupported-field', 'hidden_act', `hidden_act ${found(act)} is not supported; supported: "silu"`);
  if (raw['mlp_bias'] === true) throw bad('unsupported-field', 'mlp_bias', 'mlp_bias true is not supported');
  const numHeads = field(raw, file, 'num_attention_heads', 'count') as number;
  const hiddenSize = field(raw, file, 'hidden_size', 'count') as number;
  const numKvHeads = field(raw, file, 'num_key_value_heads', 'count', numHeads) as number;
  if (numHeads % numKvHeads !== 0) {
    throw bad('bad-field', 'num_key_value_heads', `num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  }
  const headDim = field(raw, file, 'head_dim', 'count', hiddenSize / numHeads) as number;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw bad('bad-field', 'head_dim', `head_dim ${headDim} must be an even integer (hidden_size / num_attention_heads when absent)`);
  }
  const attentionBias = field(raw, file, 'attention_bias', 'bool', false) as boolean;
  const useSliding = raw['use_sliding_window'] === true || modelType === 'mistral';
  const sw = raw['sliding_window'];
  if (useSliding && sw !== undefined && sw !== null) field(raw, file, 'sliding_window', 'count');
  const tokenId = (k: string): number | null => (Number.isSafeInteger(raw[k]) && (raw[k] as number) >= 0 ? (raw[k] as number) : null);
  return {
    modelType: modelType as ModelType,
    hiddenSize,
    intermediateSize: field(raw, file, 'intermediate_size', 'count') as number,
    numLayers: field(raw, file, 'num_hidden_layers', 'count') as number,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: field(raw, file, 'vocab_size', 'count') as number,
    maxPositions: field(raw, file, 'max_position_embeddings', 'count', 2048) as number,
    rmsNormEps: field(raw, file, 'rms_norm_eps', 'positive', 1e-6) as number,
    ropeTheta: field(raw, file, 'rope_theta', 'positive', 10000) as number,
    ropeScaling: parseRopeScaling(raw, file),
    // LlamaConfig, MistralConfig and Qwen2Config all default to untied embeddings
    tieWordEmbeddings: field(raw, file, 'tie_word_embeddings', 'bool', false) as boolean,
    qkvBias: modelType === 'qwen2' ? true : attentionBias,
    oBias: modelType === 'llama' ? attentionBias : false,
    slidingWindow: useSliding && typeof sw === 'number' ? sw : null,
    bosTokenId: tokenId('bos_token_id'),
    eosTokenId: tokenId('eos_token_id'),
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
