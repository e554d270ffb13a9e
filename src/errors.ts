// The base of quantforge's typed errors: a kebab-case `reason` (the machine-readable failure kind that
// reporters and tests read) beside the human message; `name` is the subclass's name.

export class ReasonedError<R extends string = string> extends Error {
  readonly reason: R;
  constructor(reason: R, message: string) {
    super(message);
    this.name = new.target.name;
    this.reason = reason;
  }
}

/**
 * A file the user handed quantforge (a model directory's config, tokenizer, weights, index, an ONNX export)
 * is malformed or inconsistent. The CLI exits 2 for these, as for recipe and usage errors: nothing failed to
 * compute, the input is wrong. The message names the file (and the field, where there is one).
 */
export class InputError<R extends string = string> extends ReasonedError<R> {
  /** the file (or directory) at fault */
  readonly file: string;
  /** the tensor, key or field within `file`, when the problem has one */
  readonly field: string | undefined;
  constructor(reason: R, message: string, where: { file: string; field?: string }) {
    super(reason, message);
    this.file = where.file;
    this.field = where.field;
  }
}

/** a library's error text, on one line and at most `max` characters, to quote inside a message of ours */
export function causeText(e: unknown, max = 200): string {
  const text = (e instanceof Error ? e.message : String(e)).replace(/\s*\n\s*/g, ' ').trim();
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** a JSON value for a message: compact, at most `max` characters, safe on values nested too deep to print */
export function describeValue(v: unknown, max = 60): string {
  let text: string;
  try {
    text = JSON.stringify(v) ?? String(v);
  } catch {
    text = Array.isArray(v) ? `an array of ${v.length} (nested)` : typeof v;
  }
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
