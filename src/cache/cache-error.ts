// Failures of the cache layer as data: a kebab-case reason the executor can switch on (CacheReason in
// diag/failure.ts), and a message that says what was found and what was expected.

import { ReasonedError, type CacheReason } from '../diag/failure.js';

export class CacheError extends ReasonedError<CacheReason> {}
