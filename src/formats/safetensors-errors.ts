// Every way a safetensors file can be malformed, or a read or write misused, as one typed error (the reasons
// are SafetensorsReason in diag/failure.ts).

import { ReasonedError, type SafetensorsReason } from '../diag/failure.js';

export class SafetensorsError extends ReasonedError<SafetensorsReason> {
  readonly file: string;
  readonly tensor: string | undefined;
  readonly field: string | undefined;

  constructor(reason: SafetensorsReason, file: string, detail: string, where: { tensor?: string; field?: string } = {}) {
    super(reason, `${file}: ${describeWhere(where)}${detail}`);
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
