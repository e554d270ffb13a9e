// The options that choose the step store (run, sweep, plan, cache): `--store s3://bucket/prefix | DIR`
// (else $QUANTFORGE_STORE, else the local cache directory), `--store-endpoint URL`, `--cache-dir DIR`.
// A store that cannot be used (unreachable endpoint, missing bucket, refused credentials) is bad input:
// a one-line error and exit 2, before anything is computed.

import { openStore, resolveCacheDir, resolveStoreSpec, type StoreSpec } from '../cache/store.js';
import type { StepStore, StoreOptions } from '../cache/step-store.js';
import { StoreError } from '../cache/store-error.js';
import { resolve } from 'node:path';
import { stringOption, UsageError, type OptionSpec } from './command.js';

export const storeOptions: Record<string, OptionSpec> = {
  'cache-dir': { type: 'string' },
  store: { type: 'string' },
  'store-endpoint': { type: 'string' },
};

export const storeHelp = [
  '  --store S          the step store: s3://bucket/prefix (any S3-compatible store) or a directory',
  '                     (default $QUANTFORGE_STORE, else the cache directory)',
  '  --store-endpoint URL',
  '                     an S3-compatible server (MinIO, Ceph, R2, s3rver), addressed path-style;',
  '                     credentials and region come from the AWS environment / profile chain',
  '  --cache-dir DIR    the local store (default $QUANTFORGE_CACHE or .quantforge/cache); with an s3://',
  '                     store, its local read-through copy',
].join('\n');

export interface StoreChoice {
  spec: StoreSpec;
  /** the dir store's root, or the S3 store's local read-through copy */
  cacheDir: string;
  endpoint: string | undefined;
}

export function storeChoice(values: Record<string, unknown>): StoreChoice {
  const spec = wrap(() => resolveStoreSpec({ store: stringOption(values, 'store'), cacheDir: stringOption(values, 'cache-dir') }));
  const endpoint = stringOption(values, 'store-endpoint');
  if (endpoint !== undefined && spec.kind !== 's3') throw new UsageError('--store-endpoint needs an s3:// store (--store or $QUANTFORGE_STORE)');
  return { spec, cacheDir: spec.kind === 'dir' ? spec.dir : resolve(resolveCacheDir(stringOption(values, 'cache-dir'))), endpoint };
}

/** open the chosen store; a store that cannot be used is a usage error (exit 2) */
export function openChosenStore(choice: StoreChoice, opts: StoreOptions = {}): Promise<StepStore> {
  return wrap(() => openStore(choice.spec, { ...opts, cacheDir: choice.cacheDir, endpoint: choice.endpoint }));
}

function wrap<T>(fn: () => T): T {
  const asUsage = (e: unknown): never => {
    throw e instanceof StoreError ? new UsageError(e.message) : e;
  };
  try {
    const out = fn();
    return (out instanceof Promise ? out.catch(asUsage) : out) as T;
  } catch (e) {
    return asUsage(e);
  }
}
