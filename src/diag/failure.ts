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
