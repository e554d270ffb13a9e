// Failures of the cache layer as data: a kebab-case reason the executor can switch on, and a message
// that says what was found and what was expected.

export type CacheFailureReason =
  | 'cache-entry-corrupt'
  | 'cache-key-mismatch'
  | 'cache-invalid-name'
  | 'cache-reserved-name'
  | 'cache-lock-timeout'
  | 'cache-output-blocked'
  | 'cache-invalid-size';

export class CacheError extends Error {
  constructor(
    readonly reason: CacheFailureReason,
    message: string,
  ) {
    super(message);
    this.name = 'CacheError';
  }
}
