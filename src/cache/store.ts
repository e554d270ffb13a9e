// Which step store a command works on: `--store s3://bucket/prefix | DIR`, else $QUANTFORGE_STORE, else
// the local directory (`--cache-dir`, $QUANTFORGE_CACHE, .quantforge/cache). The S3 backend (and the AWS
// SDK behind it) is loaded only when a store URL asks for it.

import { resolve } from 'node:path';
import { DirStore } from './dir-store.js';
import type { StepStore, StoreOptions } from './step-store.js';
import { StoreError } from './store-error.js';

export { DirStore } from './dir-store.js';
export type { CacheEntry, CommitFields, Inspection, PendingEntry, StepStore, StoreOptions, Verdict } from './step-store.js';

/** where the cache lives unless `--cache-dir` or `QUANTFORGE_CACHE` says otherwise */
export const DEFAULT_CACHE_DIR = '.quantforge/cache';

/** the cache root: the `--cache-dir` flag, else `$QUANTFORGE_CACHE`, else {@link DEFAULT_CACHE_DIR} */
export function resolveCacheDir(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return flag || env.QUANTFORGE_CACHE || DEFAULT_CACHE_DIR;
}

/** an S3 store as named by `s3://bucket[/prefix]`; prefix is '' or ends with '/' */
export interface S3Location {
  bucket: string;
  prefix: string;
}

export type StoreSpec = { kind: 'dir'; dir: string } | ({ kind: 's3'; url: string } & S3Location);

export interface StoreFlags {
  /** `--store` */
  store?: string | undefined;
  /** `--cache-dir`: the dir store, or the S3 store's local read-through copy */
  cacheDir?: string | undefined;
}

/** `--store`, else $QUANTFORGE_STORE, else the local cache directory */
export function resolveStoreSpec(flags: StoreFlags, env: NodeJS.ProcessEnv = process.env): StoreSpec {
  const named = flags.store || env.QUANTFORGE_STORE;
  if (named === undefined || named === '') return { kind: 'dir', dir: resolve(resolveCacheDir(flags.cacheDir, env)) };
  return parseStoreSpec(named);
}

/** `s3://bucket[/prefix]` or a directory path; anything else with a `scheme://` is refused */
export function parseStoreSpec(text: string): StoreSpec {
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(text)?.[1];
  if (scheme === undefined) return { kind: 'dir', dir: resolve(text) };
  if (scheme.toLowerCase() !== 's3') {
    throw new StoreError('store-invalid-url', `store ${text}: unsupported scheme "${scheme}://", expected s3://bucket/prefix or a directory`);
  }
  const rest = text.slice(scheme.length + 3);
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? '' : rest.slice(slash + 1);
  // AWS wants 3–63 of [a-z0-9.-]; some S3-compatible servers also allow capitals and "_"
  if (!/^[a-zA-Z0-9][a-zA-Z0-9._-]{1,61}[a-zA-Z0-9]$/.test(bucket)) {
    throw new StoreError('store-invalid-url', `store ${text}: "${bucket}" is not a bucket name, expected s3://bucket/prefix with a bucket of 3 to 63 lowercase letters, digits, "." and "-"`);
  }
  const segments = path.split('/').filter((s) => s !== '');
  if (segments.some((s) => s === '.' || s === '..')) {
    throw new StoreError('store-invalid-url', `store ${text}: the prefix may not contain "." or ".." segments`);
  }
  const prefix = segments.length > 0 ? `${segments.join('/')}/` : '';
  return { kind: 's3', bucket, prefix, url: `s3://${bucket}${prefix ? `/${prefix.slice(0, -1)}` : ''}` };
}

export interface OpenOptions extends StoreOptions {
  /** the local directory: the store itself for a dir spec is `spec.dir`; for S3 the read-through copy */
  cacheDir: string;
  /** `--store-endpoint`: an S3-compatible server (MinIO, Ceph, R2, s3rver), addressed path-style */
  endpoint?: string | undefined;
}

/**
 * Open a store and check that it can be used: for S3 that the endpoint answers, the bucket exists and the
 * credentials are accepted (a StoreError naming what failed otherwise), before any step runs.
 */
export async function openStore(spec: StoreSpec, opts: OpenOptions): Promise<StepStore> {
  if (spec.kind === 'dir') return new DirStore(spec.dir, opts);
  const { S3Store } = await import('./s3-store.js');
  // damage of the local copy is not worth a warning: it is dropped and downloaded again
  const local = new DirStore(resolve(opts.cacheDir), opts.onWarn ? { onWarn: opts.onWarn } : {});
  return S3Store.open(spec, { ...opts, local });
}
