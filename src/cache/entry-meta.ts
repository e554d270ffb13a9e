// meta.json, the manifest of one cache entry: the key record it was built from, the artifact files with
// their sizes and digests, and the step's returned metrics. Parsing checks everything that can be checked
// without reading the artifacts, so a damaged entry is reported instead of used.

import { computeKey, isDigest, type Digest, type Json, type KeyRecord } from './key.js';
import { parseJsonFile } from '../diag/file-errors.js';

export const META_FILE = 'meta.json';
/** touched on every lookup hit; its mtime orders entries for least-recently-used gc */
export const LAST_USED_FILE = 'last-used';
/** names a step may not give its own artifacts, since the entry's bookkeeping uses them */
export const RESERVED_FILES: readonly string[] = [META_FILE, LAST_USED_FILE];

export interface FileRecord {
  size: number;
  sha256: Digest;
}

export interface EntryMeta {
  /** computeKey(record); checked on every lookup so a renamed or edited entry is never used */
  key: Digest;
  record: KeyRecord;
  /** the step that produced the entry (for `cache ls` and for diagnostics; not part of the key) */
  stepId: string;
  /** every artifact file by path relative to the entry directory, `/`-separated */
  files: Record<string, FileRecord>;
  /** what the step returned (metrics such as a layer's quantization error); replayed on cache hits */
  result: Json;
  /** ISO 8601 */
  createdAt: string;
  /** how long the step ran; lets the plan display estimate what a cache miss will cost */
  elapsedMs: number;
  /**
   * S3 store only: the folder under <kind>/<key>/ that holds this entry's files. Every upload writes a
   * folder of its own, so two processes committing one key never mix their files; meta.json, written
   * last, publishes one of them.
   */
  upload?: string;
}

export type MetaCheck = { ok: true; meta: EntryMeta } | { ok: false; problem: string };

/** parse and check a meta.json text against the kind and key it was found under */
export function parseMeta(text: string, kind: string, key: Digest): MetaCheck {
  let raw: unknown;
  try {
    raw = parseJsonFile(META_FILE, text);
  } catch (e) {
    // "meta.json: not valid JSON (…)", reported with the entry's kind and key
    return bad((e as Error).message);
  }
  if (!isRecord(raw)) return bad('meta.json is not a JSON object');
  if (raw.key !== key) return bad(`meta.json names key ${String(raw.key)}, expected ${key}`);
  const record = raw.record;
  if (!isRecord(record) || typeof record.kind !== 'string') return bad('meta.json has no key record');
  if (record.kind !== kind) return bad(`meta.json is for kind "${record.kind}", expected "${kind}"`);
  let recomputed: Digest;
  try {
    recomputed = computeKey(record as unknown as KeyRecord);
  } catch (e) {
    return bad(`meta.json key record is not canonical JSON (${(e as Error).message})`);
  }
  if (recomputed !== key) return bad(`meta.json key record hashes to ${recomputed}, expected ${key}`);
  if (typeof raw.stepId !== 'string') return bad('meta.json has no stepId');
  if (typeof raw.createdAt !== 'string') return bad('meta.json has no createdAt');
  if (typeof raw.elapsedMs !== 'number') return bad('meta.json has no elapsedMs');
  if (!('result' in raw)) return bad('meta.json has no result');
  if ('upload' in raw && (typeof raw.upload !== 'string' || !/^[a-z0-9][a-z0-9-]*$/.test(raw.upload))) return bad('meta.json has an invalid upload name');
  if (!isRecord(raw.files)) return bad('meta.json has no files map');
  for (const [rel, f] of Object.entries(raw.files)) {
    const problem = checkRelPath(rel);
    if (problem) return bad(`meta.json lists ${problem}`);
    if (!isRecord(f) || !isSize(f.size) || !isDigest(f.sha256)) {
      return bad(`meta.json entry for "${rel}" is not {size, sha256}`);
    }
  }
  return { ok: true, meta: raw as unknown as EntryMeta };
}

/**
 * undefined when `rel` is a safe artifact path inside an entry; otherwise what is wrong with it
 * (absolute, escapes with `..`, or a reserved bookkeeping name)
 */
export function checkRelPath(rel: string): string | undefined {
  const parts = rel.split('/');
  if (rel === '' || rel.startsWith('/') || rel.includes('\\') || parts.some((p) => p === '' || p === '.' || p === '..')) {
    return `an unsafe file path "${rel}": expected a relative path without "." or ".." segments`;
  }
  if (RESERVED_FILES.includes(rel)) {
    return `a reserved file name "${rel}": the names ${RESERVED_FILES.join(', ')} are the cache entry's own`;
  }
  return undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isSize(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}

function bad(problem: string): MetaCheck {
  return { ok: false, problem };
}
