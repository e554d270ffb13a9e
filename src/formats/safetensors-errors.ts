// Every way a safetensors file can be malformed, or a read or write misused, as one typed error (the reasons
// are SafetensorsReason in diag/failure.ts). A malformed file is an InputError: the CLI exits 2 for it.

import { InputError, type SafetensorsReason } from '../diag/failure.js';

export class SafetensorsError extends InputError<SafetensorsReason> {
  /** the tensor entry at fault; `field` is then one of its fields */
  readonly tensor: string | undefined;

  constructor(reason: SafetensorsReason, file: string, detail: string, where: { tensor?: string; field?: string } = {}) {
    super(reason, `${file}: ${describeWhere(where)}${detail}`, { file, field: where.field });
    this.tensor = where.tensor;
  }
}

function describeWhere(where: { tensor?: string; field?: string }): string {
  const tensor = where.tensor === undefined ? '' : `tensor ${JSON.stringify(where.tensor)}: `;
  const field = where.field === undefined ? '' : `${where.field} `;
  return tensor + field;
}
