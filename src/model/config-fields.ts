// Reading config.json fields strictly: a missing or mistyped field is a named error, never a silent default
// that changes the forward. Rope parameters in both layouts HF writes (`rope_theta` + `rope_scaling`, and
// transformers 5's `rope_parameters`, per attention kind for Gemma 3).

import { InputError, type ModelReason } from '../diag/failure.js';
import { describeValue } from '../diag/quote.js';

/** a config.json that quantforge cannot read as the model it says it is; names the file and the field */
export class ModelConfigError extends InputError<ModelReason> {}

export type Raw = Record<string, unknown>;

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

export const found = (v: unknown): string => describeValue(v);

/** `raw[name]` checked against `kind`; `path` names the object inside config.json (`rope_scaling.`) */
export function field(raw: Raw, file: string, name: string, kind: FieldKind, fallback?: number | boolean, path = ''): number | boolean {
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

/** any safe integer (a step or a count that may be 0) */
export const int = (raw: Raw, file: string, name: string, fallback?: number, path = ''): number => field(raw, file, name, 'int', fallback, path) as number;
/** a size or count: a positive safe integer */
export const count = (raw: Raw, file: string, name: string, fallback?: number, path = ''): number => field(raw, file, name, 'count', fallback, path) as number;
/** a finite positive number (eps, rope bases and factors, scalars) */
export const positive = (raw: Raw, file: string, name: string, fallback?: number, path = ''): number => field(raw, file, name, 'positive', fallback, path) as number;
export const bool = (raw: Raw, file: string, name: string, fallback?: boolean, path = ''): boolean => field(raw, file, name, 'bool', fallback, path) as boolean;

/** a field that must be absent or null: quantforge does not implement what it would switch on */
export function refuseSet(raw: Raw, file: string, name: string, why: string): void {
  const v = raw[name];
  if (v !== undefined && v !== null && v !== false) {
    throw new ModelConfigError('unsupported-field', `${file}: ${name} ${found(v)} is not supported (${why}); expected null`, { file, field: name });
  }
}

export interface Llama3Scaling {
  type: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositions: number;
}

/** HF "linear" (position interpolation): every inverse frequency divided by `factor` (Gemma 3's global layers) */
export interface LinearScaling {
  type: 'linear';
  factor: number;
}

export type RopeScaling = Llama3Scaling | LinearScaling;

/** the rotary embedding of a set of layers: base and scaling */
export interface Rope {
  theta: number;
  scaling: RopeScaling | null;
}

/** a rope_scaling (or rope_parameters) object; `default` and null mean none */
export function parseRopeScaling(rs: unknown, file: string, name = 'rope_scaling'): RopeScaling | null {
  if (rs === undefined || rs === null) return null;
  if (typeof rs !== 'object' || Array.isArray(rs)) {
    throw new ModelConfigError('bad-field', `${file}: field "${name}" should be an object or null, found ${found(rs)}`, { file, field: name });
  }
  const o = rs as Raw;
  const type = o['rope_type'] ?? o['type'];
  if (type === 'default') return null;
  const p = `${name}.`;
  if (type === 'linear') return { type: 'linear', factor: positive(o, file, 'factor', undefined, p) };
  if (type !== 'llama3') {
    throw new ModelConfigError('unsupported-field', `${file}: ${name}.rope_type ${found(type)} is not supported; supported: "llama3", "linear" (or null)`, { file, field: `${name}.rope_type` });
  }
  return {
    type: 'llama3',
    factor: positive(o, file, 'factor', undefined, p),
    lowFreqFactor: positive(o, file, 'low_freq_factor', undefined, p),
    highFreqFactor: positive(o, file, 'high_freq_factor', undefined, p),
    originalMaxPositions: count(o, file, 'original_max_position_embeddings', undefined, p),
  };
}

/**
 * The rope of a model (or of one attention kind, `kind` = `full_attention` / `sliding_attention`):
 * `rope_parameters` (transformers 5: `{rope_type, rope_theta, ...}`, or keyed by attention kind) when
 * present, else `rope_theta` and `rope_scaling`.
 */
export function parseRope(raw: Raw, file: string, defaultTheta: number, kind?: string): Rope {
  const params = raw['rope_parameters'];
  if (params !== undefined && params !== null && typeof params === 'object' && !Array.isArray(params)) {
    const p = params as Raw;
    const own = kind !== undefined && typeof p[kind] === 'object' && p[kind] !== null ? (p[kind] as Raw) : p;
    const name = own === p ? 'rope_parameters' : `rope_parameters.${kind}`;
    return { theta: positive(own, file, 'rope_theta', defaultTheta, `${name}.`), scaling: parseRopeScaling(own, file, name) };
  }
  if (params !== undefined && params !== null) {
    throw new ModelConfigError('bad-field', `${file}: field "rope_parameters" should be an object or null, found ${found(params)}`, { file, field: 'rope_parameters' });
  }
  return { theta: positive(raw, file, 'rope_theta', defaultTheta), scaling: parseRopeScaling(raw['rope_scaling'], file) };
}
