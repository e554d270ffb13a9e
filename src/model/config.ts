// config.json of a HuggingFace Llama-family model directory, parsed strictly: every field quantforge's
// forward depends on is checked, and anything it would silently compute wrong is refused with a clear error.

import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ReasonedError, type ModelReason } from '../diag/failure.js';

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

export class ModelConfigError extends ReasonedError<ModelReason> {}

const PICKLE = /^(pytorch_model.*\.bin|.*\.pt|.*\.pth|.*\.ckpt|.*\.pkl)$/;

/** refuse directories that would need code execution (remote code, pickle weights) */
export function checkModelDirSafety(dir: string, raw: Record<string, unknown>): void {
  if ('auto_map' in raw) {
    throw new ModelConfigError(
      'remote-code-refused',
      `${join(dir, 'config.json')}: field "auto_map" asks for custom (remote) model code; quantforge never executes code from a model directory`,
    );
  }
  const files = readdirSync(dir);
  if (!files.some((f) => f.endsWith('.safetensors'))) {
    const pickles = files.filter((f) => PICKLE.test(f));
    const hint = pickles.length > 0 ? `found only pickle weights (${pickles.join(', ')}), which can execute code when loaded; ` : '';
    throw new ModelConfigError(
      pickles.length > 0 ? 'pickle-refused' : 'no-weights',
      `${dir}: ${hint}quantforge reads only *.safetensors weights (convert with \`transformers\`' save_pretrained(safe_serialization=True) on a trusted machine)`,
    );
  }
}

function field(raw: Record<string, unknown>, file: string, name: string, kind: 'int' | 'number' | 'bool', fallback?: number | boolean): number | boolean {
  const v = raw[name];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new ModelConfigError('missing-field', `${file}: required field "${name}" is missing`);
  }
  const ok = kind === 'bool' ? typeof v === 'boolean' : typeof v === 'number' && Number.isFinite(v) && (kind !== 'int' || Number.isInteger(v));
  if (!ok) {
    throw new ModelConfigError('bad-field', `${file}: field "${name}" should be ${kind === 'int' ? 'an integer' : kind === 'bool' ? 'a boolean' : 'a number'}, found ${JSON.stringify(v)}`);
  }
  return v as number | boolean;
}

function parseRopeScaling(raw: Record<string, unknown>, file: string): RopeScaling | null {
  const rs = raw['rope_scaling'];
  if (rs === undefined || rs === null) return null;
  if (typeof rs !== 'object') throw new ModelConfigError('bad-field', `${file}: field "rope_scaling" should be an object or null`);
  const o = rs as Record<string, unknown>;
  const type = o['rope_type'] ?? o['type'];
  if (type === 'default') return null;
  if (type !== 'llama3') {
    throw new ModelConfigError(
      'unsupported-field',
      `${file}: rope_scaling type ${JSON.stringify(type)} is not supported; supported: "llama3" (or null)`,
    );
  }
  const f = `${file} rope_scaling`;
  return {
    type: 'llama3',
    factor: field(o, f, 'factor', 'number') as number,
    lowFreqFactor: field(o, f, 'low_freq_factor', 'number') as number,
    highFreqFactor: field(o, f, 'high_freq_factor', 'number') as number,
    originalMaxPositions: field(o, f, 'original_max_position_embeddings', 'int') as number,
  };
}

export function parseModelConfig(raw: Record<string, unknown>, file = 'config.json'): ModelConfig {
  const modelType = raw['model_type'];
  if (!MODEL_TYPES.includes(modelType as ModelType)) {
    throw new ModelConfigError(
      'unsupported-model-type',
      `${file}: model_type ${JSON.stringify(modelType)} is not supported; supported: ${MODEL_TYPES.join(', ')}`,
    );
  }
  const act = raw['hidden_act'] ?? 'silu';
  if (act !== 'silu') throw new ModelConfigError('unsupported-field', `${file}: hidden_act ${JSON.stringify(act)} is not supported; supported: "silu"`);
  if (raw['mlp_bias'] === true) throw new ModelConfigError('unsupported-field', `${file}: mlp_bias true is not supported`);
  const numHeads = field(raw, file, 'num_attention_heads', 'int') as number;
  const hiddenSize = field(raw, file, 'hidden_size', 'int') as number;
  const numKvHeads = field(raw, file, 'num_key_value_heads', 'int', numHeads) as number;
  if (numHeads % numKvHeads !== 0) {
    throw new ModelConfigError('bad-field', `${file}: num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  }
  const headDim = field(raw, file, 'head_dim', 'int', hiddenSize / numHeads) as number;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new ModelConfigError('bad-field', `${file}: head_dim ${headDim} must be an even integer (hidden_size / num_attention_heads when absent)`);
  }
  const attentionBias = field(raw, file, 'attention_bias', 'bool', false) as boolean;
  const useSliding = raw['use_sliding_window'] === true || modelType === 'mistral';
  const sw = raw['sliding_window'];
  const tokenId = (k: string): number | null => (typeof raw[k] === 'number' ? (raw[k] as number) : null);
  return {
    modelType: modelType as ModelType,
    hiddenSize,
    intermediateSize: field(raw, file, 'intermediate_size', 'int') as number,
    numLayers: field(raw, file, 'num_hidden_layers', 'int') as number,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: field(raw, file, 'vocab_size', 'int') as number,
    maxPositions: field(raw, file, 'max_position_embeddings', 'int', 2048) as number,
    rmsNormEps: field(raw, file, 'rms_norm_eps', 'number', 1e-6) as number,
    ropeTheta: field(raw, file, 'rope_theta', 'number', 10000) as number,
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
  const file = join(dir, 'config.json');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new ModelConfigError('missing-config', `${dir}: no config.json; expected a HuggingFace model directory`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ModelConfigError('bad-config', `${file}: not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ModelConfigError('bad-config', `${file}: expected a JSON object`);
  }
  checkModelDirSafety(dir, raw as Record<string, unknown>);
  return parseModelConfig(raw as Record<string, unknown>, file);
}
