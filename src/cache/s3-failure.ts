// How an S3 step store reads the SDK's failures: which are worth another attempt, which mean "not there",
// and every other one turned into a one-line StoreError that names the store, the endpoint and what failed
// (missing or rejected credentials, an unreachable endpoint, a missing bucket, any other request).

import { StoreError } from './store-error.js';

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE']);
const CREDENTIAL_ERRORS = new Set(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'ExpiredToken', 'InvalidToken', 'TokenRefreshRequired', 'InvalidClientTokenId']);

/** an SDK failure as a one-line StoreError naming the store (`target`, at `where`) and what failed */
export function storeFailure(e: unknown, doing: string, target: { url: string; bucket: string }, where: string, ctx: { bucketLevel?: boolean } = {}): StoreError {
  if (e instanceof StoreError) return e;
  const { url, bucket } = target;
  const name = errorName(e);
  const code = (e as { code?: string }).code;
  const status = httpStatus(e);
  const detail = oneLine(`${name && name !== 'Error' && name !== 'UnknownError' ? `${name}: ` : ''}${(e as Error)?.message ?? String(e)}`);
  if (name === 'CredentialsProviderError') {
    return new StoreError(
      'store-credentials-missing',
      `store ${url}: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or another source of the AWS SDK's default chain)`,
    );
  }
  if ((code && NETWORK_CODES.has(code)) || name === 'TimeoutError' || (status === undefined && /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|socket hang up/.test(detail))) {
    return new StoreError('store-unreachable', `store ${url}: cannot reach ${where} (${code ?? oneLine((e as Error)?.message ?? name)})`);
  }
  if (name === 'NoSuchBucket' || (ctx.bucketLevel && status === 404)) {
    return new StoreError('store-bucket-missing', `store ${url}: bucket "${bucket}" not found at ${where}`);
  }
  if (CREDENTIAL_ERRORS.has(name) || status === 403) {
    return new StoreError('store-credentials-rejected', `store ${url}: credentials rejected by ${where} while ${doing} (${detail})`);
  }
  return new StoreError('store-request-failed', `store ${url}: ${doing} failed at ${where} (${status ? `HTTP ${status} ` : ''}${detail})`);
}

export function errorName(e: unknown): string {
  return (e as { name?: string; Code?: string })?.name ?? '';
}

export function httpStatus(e: unknown): number | undefined {
  return (e as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

export function isNotFound(e: unknown): boolean {
  const name = errorName(e);
  return name === 'NoSuchKey' || name === 'NotFound' || (httpStatus(e) === 404 && name !== 'NoSuchBucket');
}

/** worth another attempt: the network, throttling, a server error */
export function isTransient(e: unknown): boolean {
  const status = httpStatus(e);
  const code = (e as { code?: string }).code;
  return (code !== undefined && NETWORK_CODES.has(code)) || status === undefined || status >= 500 || status === 429;
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}
