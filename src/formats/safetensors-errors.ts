// Every way a safetensors file can be malformed, or a read or write misused, as one typed error.

export type SafetensorsErrorReason =
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

export class SafetensorsError extends Error {
  readonly reason: SafetensorsErrorReason;
  readonly file: string;
  readonly tensor: string | undefined;
  readonly field: string | undefined;

  constructor(reason: SafetensorsErrorReason, file: string, detail: string, where: { tensor?: string; field?: string } = {}) {
    super(`${file}: ${describeWhere(where)}${detail}`);
    this.name = 'SafetensorsError';
    this.reason = reason;
    this.file = file;
    this.tensor = where.tensor;
    this.field = where.field;
  }
}

function describeWhere(where: { tensor?: string; field?: string }): string {
  const tensor = where.tensor === undefined ? '' : `tensor ${JSON.stringify(where.tensor)}: `;
  const field = where.field === undefined ? '' : `${where.field} `;
  return tensor + field;
}
