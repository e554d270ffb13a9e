// The cache key of a step: an explicit record of everything that can change the step's results, hashed as
// canonical JSON. Two steps with equal records produce byte-identical artifacts, so the key doubles as
// the address of the step's cache entry (.quantforge/cache/<kind>/<key>/).

import { createHash } from 'node:crypto';
import { ReasonedError } from '../diag/failure.js';

/** plain JSON data: what params, metrics and key records are made of */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** sha256 hex digest: of a file's bytes, or of a key record's canonical JSON */
export type Digest = string & { readonly __brand: 'Digest' };

/** bump to invalidate every existing cache entry (layout, meta or key semantics changed) */
export const CACHE_FORMAT = 1;

/**
 * Everything a step's results depend on. Adding a field here changes every key, so bump
 * {@link CACHE_FORMAT} together with it.
 */
export interface KeyRecord {
  /** {@link CACHE_FORMAT} at the time the entry was written; a bump makes every old key unreachable */
  cacheFormat: number;
  /** the step kind; two kinds with equal params are still different computations */
  kind: string;
  /**
   * `StepImpl.version`: bumped by hand whenever a change to the step's code changes its results
   * (a bug fix, a new default), since the code itself is not hashed.
   */
  version: number;
  /** the step's params after defaults and overrides, seeds included; key order does not matter */
  params: Json;
  /**
   * the key of each input step, by step id. Keys are Merkle keys, so any change upstream changes every
   * key downstream without re-reading upstream artifacts.
   */
  inputs: Record<string, Digest>;
  /**
   * content digests of the source files the step reads (model shards, tokenizer, datasets), by a stable
   * role name such as `model/model.safetensors`: an absolute path would make keys differ between
   * checkouts of the same recipe, and a moved file with the same bytes should still hit.
   */
  files: Record<string, Digest>;
  /** versions of the code outside the step that shapes its numbers: `quantforge`, `onnxruntime-node` */
  tools: Record<string, string>;
  /**
   * the execution provider, only for steps whose numbers differ between providers (float reductions
   * run in another order on CUDA and WebGPU, which also lack float64 kernels). Absent for steps whose
   * results are provider-independent (`deviceDependent: false`), so a CPU run can reuse them after a
   * GPU run; a step computed on webgpu is never reused by a cpu run otherwise.
   */
  device?: 'cpu' | 'webgpu' | 'cuda';
}

export class CanonicalJsonError extends ReasonedError<'cache-key-not-json'> {
  constructor(path: string, found: string) {
    super('cache-key-not-json', `cannot put ${found} at ${path || '<root>'} into a cache key: expected JSON (null, boolean, finite number, string, array, object)`);
  }
}

/**
 * JSON with object keys sorted by UTF-16 code units (locale-independent), no whitespace, numbers as
 * `JSON.stringify` writes them. `undefined` object fields are dropped, as JSON.stringify does; anything
 * else that is not JSON (NaN, Infinity, bigint, functions, undefined in arrays) throws, because silently
 * mapping it to `null` would let two different params share a key.
 */
export function canonicalJson(value: unknown): string {
  return write(value, []);
}

/**
 * `value` as canonical JSON; `at` is the path to it as keys and indices, joined into a message only when a
 * value is not JSON (every key of a plan is computed on every run, a no-op included)
 */
function write(value: unknown, at: (string | number)[]): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw new CanonicalJsonError(pathOf(at), String(value));
      return JSON.stringify(value);
    case 'string':
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) {
        let out = '[';
        for (let i = 0; i < value.length; i++) {
          at.push(i);
          // a hole of a sparse array writes as nothing (what map and join always made of it)
          out += (i > 0 ? ',' : '') + (i in value ? write(value[i], at) : '');
          at.pop();
        }
        return `${out}]`;
      }
      const proto = Object.getPrototypeOf(value) as unknown;
      if (proto !== Object.prototype && proto !== null) {
        throw new CanonicalJsonError(pathOf(at), `an instance of ${(value as object).constructor?.name ?? 'a class'}`);
      }
      const record = value as Record<string, unknown>;
      let out = '{';
      // the default sort compares UTF-16 code units
      for (const k of Object.keys(record).sort()) {
        const v = record[k];
        if (v === undefined) continue;
        at.push(k);
        out += `${out.length > 1 ? ',' : ''}${JSON.stringify(k)}:${write(v, at)}`;
        at.pop();
      }
      return `${out}}`;
    }
    default:
      throw new CanonicalJsonError(pathOf(at), typeof value);
  }
}

/** `modules.q.weights[1].lr` */
function pathOf(at: readonly (string | number)[]): string {
  let path = '';
  for (const s of at) path += typeof s === 'number' ? `[${s}]` : path ? `.${s}` : s;
  return path;
}

/** sha256 of a UTF-8 string, as a {@link Digest} */
export function sha256Hex(text: string): Digest {
  return createHash('sha256').update(text, 'utf8').digest('hex') as Digest;
}

/** the cache key of a step: sha256 of the record's canonical JSON */
export function computeKey(record: KeyRecord): Digest {
  return sha256Hex(canonicalJson(record));
}

/** true for a 64-digit lowercase hex string, i.e. something {@link computeKey} could have returned */
export function isDigest(value: unknown): value is Digest {
  return typeof value === 'string' && /^[0-9a-f]{64}$/.test(value);
}

/**
 * Why a step must run, in one line for the plan display: `new` when there is no previous record,
 * otherwise every difference, most fundamental first, e.g. `param changed: iters 200 → 50` or
 * `tool changed: onnxruntime-node 1.29 → 1.30; input changed: stage1.gptq/layer.2`. `unchanged` when
 * the records are equal (then the key is the same and the step should have been a cache hit).
 */
export function explainChange(previous: KeyRecord | undefined, next: KeyRecord): string {
  if (previous === undefined) return 'new';
  const parts: string[] = [];
  const scalar = (label: string, a: unknown, b: unknown) => {
    if (a !== b) parts.push(`${label} changed: ${show(a)} → ${show(b)}`);
  };
  scalar('cache format', previous.cacheFormat, next.cacheFormat);
  scalar('kind', previous.kind, next.kind);
  scalar('version', previous.version, next.version);
  parts.push(...diffMap('tool', previous.tools, next.tools, (name, a, b) => `${name} ${a ?? '(none)'} → ${b ?? '(none)'}`));
  scalar('device', previous.device ?? '(any)', next.device ?? '(any)');
  const params = diffJson(previous.params, next.params, '');
  if (params.length > 0) parts.push(`param changed: ${capped(params)}`);
  parts.push(...diffMap('input', previous.inputs, next.inputs, (id) => id));
  parts.push(...diffMap('file', previous.files, next.files, (role) => role));
  return parts.length === 0 ? 'unchanged' : parts.join('; ');
}

/** `<label> changed|added|removed: ...` lines for the entries of two string maps that differ */
function diffMap(
  label: string,
  a: Record<string, string>,
  b: Record<string, string>,
  describe: (name: string, before: string | undefined, after: string | undefined) => string,
): string[] {
  const changed: string[] = [];
  const added: string[] = [];
  const removed: string[] = [];
  for (const name of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
    const before = a[name];
    const after = b[name];
    if (before === after) continue;
    const line = describe(name, before, after);
    if (before === undefined) added.push(line);
    else if (after === undefined) removed.push(line);
    else changed.push(line);
  }
  const out: string[] = [];
  if (changed.length > 0) out.push(`${label} changed: ${capped(changed)}`);
  if (added.length > 0) out.push(`${label} added: ${capped(added)}`);
  if (removed.length > 0) out.push(`${label} removed: ${capped(removed)}`);
  return out;
}

/** `path before → after` for every leaf where two JSON values differ */
function diffJson(a: Json | undefined, b: Json | undefined, path: string): string[] {
  if (isObject(a) && isObject(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((k) => diffJson(a[k], b[k], path ? `${path}.${k}` : k));
  }
  if (Array.isArray(a) && Array.isArray(b) && a.length === b.length) {
    return a.flatMap((v, i) => diffJson(v, b[i], `${path}[${i}]`));
  }
  const before = a === undefined ? undefined : canonicalJson(a);
  const after = b === undefined ? undefined : canonicalJson(b);
  if (before === after) return [];
  return [`${path || '(params)'} ${before === undefined ? '(unset)' : clip(before)} → ${after === undefined ? '(unset)' : clip(after)}`];
}

function isObject(v: Json | undefined): v is { [key: string]: Json } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function show(v: unknown): string {
  return typeof v === 'string' ? v : clip(canonicalJson(v));
}

function clip(text: string): string {
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

function capped(items: string[], max = 3): string {
  return items.length <= max ? items.join(', ') : `${items.slice(0, max).join(', ')}, +${items.length - max} more`;
}
