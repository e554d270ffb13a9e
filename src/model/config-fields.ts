// Reading config.json fields strictly: a missing or mistyped field is a named error, never a silent default
// that changes the forward. Rope parameters in both layouts HF writes (`rope_theta` + `rope_scaling`, and
// transformers 5's `rope_parameters`, per attention kind for Gemma 3).

import { ReasonedError, type ModelReason } from '../diag/failure.js';

export class ModelConfigError extends ReasonedError<ModelReason> {}

export type Raw = Record<string, unknown>;

export function field(raw: Raw, file: string, name: string, kind: 'int' | 'number' | 'bool', fallback?: number | boolean): number | boolean {
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

export const int = (raw: Raw, file: string, name: string, fallback?: number): number => field(raw, file, name, 'int', fallback) as number;
export const num = (raw: Raw, file: string, name: string, fallback?: number): number => field(raw, file, name, 'number', fallback) as number;
export const bool = (raw: Raw, file: string, name: string, fallback?: boolean): boolean => field(raw, file, name, 'bool', fallback) as boolean;

/** a field that must be absent or null: quantforge does not implement what it would switch on */
export function refuseSet(raw: Raw, file: string, name: string, why: string): void {
  const v = raw[name];
  if (v !== undefined && v !== null && v !== false) {
    throw new ModelConfigError('unsupported-field', `${file}: ${name} ${JSON.stringify(v)} is not supported (${why}); expected null`);
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
  if (typeof rs !== 'object') throw new ModelConfigError('bad-field', `${file}: field "${name}" should be an object or null`);
  const o = rs as Raw;
  const type = o['rope_type'] ?? o['type'];
  if (type === 'default') return null;
  const f = `${file} ${name}`;
  if (type === 'linear') return { type: 'linear', factor: num(o, f, 'factor') };
  if (type !== 'llama3') {
    throw new ModelConfigError('unsupported-field', `${file}: ${name} type ${JSON.stringify(type)} is not supported; supported: "llama3", "linear" (or null)`);
  }
  return {
    type: 'llama3',
    factor: num(o, f, 'factor'),
    lowFreqFactor: num(o, f, 'low_freq_factor'),
    highFreqFactor: num(o, f, 'high_freq_factor'),
    originalMaxPositions: int(o, f, 'original_max_position_embeddings'),
  };
}

/**
 * The rope of a model (or of one attention kind, `kind` = `full_attention` / `sliding_attention`):
 * `rope_parameters` (transformers 5: `{rope_type, rope_theta, ...}`, or keyed by attention kind) when
 * present, else `rope_theta` and `rope_scaling`.
 */
export function parseRope(raw: Raw, file: string, defaultTheta: number, kind?: string): Rope {
  const params = raw['rope_parameters'];
  if (params !== undefined && params !== null && typeof params === 'object') {
    const p = params as Raw;
    const own = kind !== undefined && typeof p[kind] === 'object' && p[kind] !== null ? (p[kind] as Raw) : p;
    const name = own === p ? 'rope_parameters' : `rope_parameters.${kind}`;
    return { theta: num(own, `${file} ${name}`, 'rope_theta', defaultTheta), scaling: parseRopeScaling(own, file, name) };
  }
  return { theta: num(raw, file, 'rope_theta', defaultTheta), scaling: parseRopeScaling(raw['rope_scaling'], file) };
}
