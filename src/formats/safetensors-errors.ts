// Every way a safetensors file can be malformed, or a read or write misused, as one typed error.

import { InputError } from '../errors.js';

export type SafetensorsErrorReason =
  // the file itself
  | 'file-unreadable'
  // the 8-byte length prefix
  | 'file-too-short'
  | 'header-length-out-of-range'
  // the JSON header as a whole
  | 'header-not-utf8'
  | 'header-not-json'
  | 'header-not-object'
  | 'duplicate-name'
  | 'metadata-not-object'
  | 'metadata-not-string'
  // one tensor entry
  | 'entry-not-object'
  | 'missing-field'
  | 'unknown-field'
  | 'duplicate-field'
  | 'unknown-dtype'
  | 'unsupported-dtype'
  | 'bad-shape'
  | 'bad-offsets'
  | 'byte-size-mismatch'
  // the entries together against the data section
  | 'offsets-out-of-bounds'
  | 'offsets-overlap'
  | 'offsets-gap'
  // reading and writing
  | 'tensor-not-found'
  | 'short-read'
  | 'file-closed'
  | 'reserved-name'
  | 'bad-tensor'
  | 'writer-finished';

export class SafetensorsError extends InputError<SafetensorsErrorReason> {
  /** the tensor entry at fault; `field` is then one of its fields */
  readonly tensor: string | undefined;

  constructor(reason: SafetensorsErrorReason, file: string, detail: string, where: { tensor?: string; field?: string } = {}) {
    super(reason, `${file}: ${describeWhere(where)}${detail}`, where.field === undefined ? { file } : { file, field: where.field });
    this.tensor = where.tensor;
  }
}

function describeWhere(where: { tensor?: string; field?: string }): string {
  const tensor = where.tensor === undefined ? '' : `tensor ${JSON.stringify(where.tensor)}: `;
  const field = where.field === undefined ? '' : `${where.field} `;
  return tensor + field;
}
