// Failures of a step store backend as data: what went wrong talking to the store (a bucket that is not
// there, credentials the server refuses, an endpoint nobody answers on), as a kebab-case reason (StoreReason
// in diag/failure.ts) beside a one-line message that names the store and what failed.

import { ReasonedError, type StoreReason } from '../diag/failure.js';

export class StoreError extends ReasonedError<StoreReason> {}
