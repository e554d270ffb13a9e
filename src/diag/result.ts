// Result of an operation that can fail with data rather than a throw (wireit's error.ts shape).

import type { Diagnostic } from './diagnostic.js';

export type Result<T, E = Diagnostic[]> = { ok: true; value: T } | { ok: false; error: E };

export function ok<T>(value: T): { ok: true; value: T } {
  return { ok: true, value };
}

export function fail<E>(error: E): { ok: false; error: E } {
  return { ok: false, error };
}
