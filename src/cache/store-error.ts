// Failures of a step store backend as data: what went wrong talking to the store (a bucket that is not
// there, credentials the server refuses, an endpoint nobody answers on), as a kebab-case reason beside a
// one-line message that names the store and what failed.

import { ReasonedError } from '../errors.js';

export type StoreFailureReason =
  /** `--store` / `QUANTFORGE_STORE` is neither a directory nor `s3://bucket[/prefix]` */
  | 'store-invalid-url'
  /** connection refused, DNS failure, timeout: nobody answered at the endpoint */
  | 'store-unreachable'
  | 'store-bucket-missing'
  /** the SDK's provider chain found no credentials at all */
  | 'store-credentials-missing'
  /** the server refused the credentials (unknown key, bad signature, access denied) */
  | 'store-credentials-rejected'
  /** any other refused request (while opening, uploading, downloading or deleting) */
  | 'store-request-failed'
  /** an uploaded entry's files or meta.json could not all be written */
  | 'store-upload-failed';

export class StoreError extends ReasonedError<StoreFailureReason> {}
