// Failures as data (STYLE.md §6, tiers 3 and 4): every way a step, the build engine or a command fails has a
// kebab-case reason from one union (wireit's event.ts), beside the human message and, when known, the recipe
// Location it comes from. ReasonedError carries a Failure through throw and catch; `toFailure` turns anything
// thrown into one (a thrown plain Error is an internal error: `unknown-error-thrown`); the compute worker sends
// Failures, so a reason survives the thread boundary. Recipe and plan mistakes are Diagnostics (their own codes).

import type { Location } from './diagnostic.js';

/** a safetensors file that is malformed, or a read or write misused (formats/safetensors*.ts) */
export type SafetensorsReason =
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

/**
 * a model directory quantforge refuses or cannot read (model/config.ts, weight-files.ts, checkpoint.ts,
 * model-check.ts, tokenizer.ts, quantization-config.ts, finite.ts)
 */
export type ModelReason =
  | 'model-not-found'
  | 'missing-config'
  | 'bad-config'
  | 'missing-field'
  | 'bad-field'
  | 'unsupported-field'
  | 'unsupported-model-type'
  | 'remote-code-refused'
  | 'pickle-refused'
  | 'no-weights'
  | 'index-invalid'
  | 'missing-shard'
  | 'missing-tensor'
  | 'tensor-not-found'
  | 'duplicate-tensor'
  /** a tensor's shape or dtype differs from what config.json implies */
  | 'shape-mismatch'
  | 'dtype-mismatch'
  | 'tokenizer-missing'
  | 'tokenizer-unreadable'
  /** a tokenizer.json the tokenizers library cannot load, or fails to encode or decode with */
  | 'tokenizer-invalid'
  | 'tokenizer-failed'
  /** a token id past config.json's vocab_size */
  | 'bad-token-id'
  /** a compressed-tensors checkpoint whose quantization_config, or a quantized tensor of it, is malformed */
  | 'quantization-config-invalid'
  | 'quantized-tensor-invalid'
  /** a weight holding NaN or ±Inf */
  | 'non-finite-weight';

/** a dataset file (model/windows.ts, steps/tokenize.ts) */
export type DatasetReason = 'file-not-found' | 'dataset-unreadable' | 'dataset-invalid' | 'dataset-too-short';

/** quantization arguments and their arithmetic (quant/, algo/targets.ts, formats/pack-quantized.ts) */
export type QuantReason =
  | 'unknown-scheme'
  | 'scheme-conflict'
  | 'invalid-quant-args'
  | 'unsupported-quant-args'
  | 'quant-shape-mismatch'
  | 'pack-shape-mismatch'
  | 'invalid-target-regex'
  | 'invalid-observer-kwargs'
  | 'mse-needs-runtime';

/** the methods (algo/, steps/) */
export type MethodReason =
  | 'gptq-non-finite-input'
  | 'gptq-shape-mismatch'
  | 'gptq-unsupported-args'
  | 'gptq-singular-hessian'
  | 'cholesky-not-positive-definite'
  | 'awq-bad-grid'
  | 'awq-no-finite-loss'
  | 'awq-shape-mismatch'
  /** an awq step's loss shards (awq-loss) do not cover the windows once, or scored other candidates */
  | 'awq-partials-mismatch'
  | 'smoothing-shape-mismatch'
  | 'smoothing-strength-out-of-range'
  | 'smoothing-quantized-module'
  | 'bad-mapping'
  | 'missing-tensor'
  | 'bad-capture-params'
  | 'missing-statistic'
  | 'autoround-unsupported-actorder'
  | 'autoround-input-mismatch'
  | 'autoround-missing-weight'
  | 'autoround-loss-not-finite'
  | 'autoround-unsupported-scheme'
  | 'perplexity-not-finite'
  /** an activation became NaN or ±Inf over the calibration windows although the weights were finite */
  | 'non-finite-activation';

/** onnxruntime and the graphs built for it (ort/, graphs/) */
export type OrtReason =
  | 'ort-session-failed'
  | 'device-unavailable'
  | 'autodiff-unsupported-op'
  | 'autodiff-unknown-rank'
  | 'autodiff-bad-argument'
  // an ONNX export onnxruntime cannot load or run, or that disagrees with its config.json (graphs/onnx-model.ts)
  | 'onnx-load-failed'
  | 'onnx-config-mismatch'
  | 'onnx-run-failed'
  | 'non-finite-output';

/** GGUF files: block types (quant/gguf-*.ts), the reader, writer and exporter (formats/gguf/) */
export type GgufReason =
  | 'unknown-ggml-type'
  | 'row-not-whole-blocks'
  | 'gguf-read-invalid'
  | 'gguf-write-invalid'
  | 'gguf-export-unsupported'
  | 'gguf-tokenizer-unsupported';

/** outputs that a format cannot write (formats/, outputs/) */
export type OutputReason = 'unsupported-output-scheme' | 'unsupported-output-model' | 'output-requantizes';

/** the step cache (cache/) */
export type CacheReason =
  | 'cache-entry-corrupt'
  | 'cache-key-mismatch'
  | 'cache-key-not-json'
  | 'cache-invalid-name'
  | 'cache-reserved-name'
  | 'cache-lock-timeout'
  | 'cache-output-blocked'
  | 'cache-invalid-size';

/** a step store backend (cache/store.ts, cache/s3-*.ts): what went wrong talking to the store */
export type StoreReason =
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

/** the job queue (exec/queue/): Redis, and what a worker refuses or cannot find */
export type QueueReason =
  /** `--queue` / `QUANTFORGE_QUEUE` is not `redis://[user:password@]host[:port][/db]` */
  | 'queue-invalid-url'
  /** nobody answered at the Redis address, or it refused the credentials */
  | 'queue-unreachable'
  /** Redis went away during a run and did not come back in time */
  | 'queue-connection-lost'
  /** a worker computed another key from the job's record with its own versions (step code, tools, provider, files) */
  | 'queue-key-mismatch'
  /** an input of a job is not in the shared store (gc'd, or never uploaded there) */
  | 'queue-input-missing'
  /** the model directory or a source file of a job is not reachable on the worker, by path or as an upload */
  | 'queue-source-missing'
  /** a job completed but its entry is not in the shared store */
  | 'queue-entry-missing'
  /** BullMQ failed the job for a reason of its own (stalled too often, removed) */
  | 'queue-job-failed';

/** files quantforge reads and writes for itself: lock files, history, outputs, cache entries (diag/file-errors.ts) */
export type FileReason =
  /** a JSON file that does not parse; the message names the file */
  | 'json-file-invalid'
  /** ENOSPC or EDQUOT while writing; the message is "no space left on <path>" */
  | 'disk-full';

/** the run itself and the command line */
export type RunReason =
  | 'interrupted'
  | 'worker-exited'
  | 'usage'
  /** QUANTFORGE_STRICT_WARNINGS=1: a step or command left a file handle to the garbage collector (exec/leak-watch.ts) */
  | 'file-handle-leak'
  | 'unknown-error-thrown';

export type FailureReason =
  | SafetensorsReason
  | ModelReason
  | DatasetReason
  | QuantReason
  | MethodReason
  | OrtReason
  | GgufReason
  | OutputReason
  | CacheReason
  | StoreReason
  | QueueReason
  | FileReason
  | RunReason;

/** a failure as plain data: what events, the worker protocol and reporters carry */
export interface Failure {
  readonly reason: FailureReason;
  readonly message: string;
  readonly stack?: string;
  /** the recipe node the failure comes from, when known */
  readonly location?: Location;
}

/** the base of quantforge's typed errors; `name` is the subclass's name */
export class ReasonedError<R extends FailureReason = FailureReason> extends Error {
  readonly reason: R;
  readonly location: Location | undefined;
  constructor(reason: R, message: string, options: { location?: Location; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.reason = reason;
    this.location = options.location;
  }

  /** an error rebuilt from a Failure (e.g. one the compute worker sent), its stack kept */
  static from(f: Failure): ReasonedError {
    const e = new ReasonedError(f.reason, f.message, f.location ? { location: f.location } : {});
    if (f.stack !== undefined) e.stack = f.stack;
    return e;
  }
}

/** where an InputError lies: the file the user handed quantforge, and the tensor, key or field within it */
export interface InputSite {
  readonly file: string;
  readonly field?: string | undefined;
}

/**
 * A file the user handed quantforge (a model directory's config, tokenizer, weights, index, an ONNX export, a
 * dataset) is malformed or inconsistent. Nothing failed to compute, the input is wrong: the CLI exits 2 for
 * these, as for recipe and usage errors. The message names the file (and the field, where there is one).
 */
export class InputError<R extends FailureReason = FailureReason> extends ReasonedError<R> {
  /** the file (or directory) at fault */
  readonly file: string;
  /** the tensor, key or field within `file`, when the problem has one */
  readonly field: string | undefined;
  constructor(reason: R, message: string, where: InputSite, options: { location?: Location; cause?: unknown } = {}) {
    super(reason, message, options);
    this.file = where.file;
    this.field = where.field;
  }
}

/**
 * any thrown value as a Failure: a ReasonedError keeps its reason, a full disk (ENOSPC, EDQUOT) is
 * `disk-full`, anything else is `unknown-error-thrown`
 */
export function toFailure(e: unknown): Failure {
  const error = e instanceof Error ? e : new Error(String(e));
  const full = error instanceof ReasonedError ? undefined : diskFullMessage(error);
  const reason = error instanceof ReasonedError ? error.reason : full !== undefined ? 'disk-full' : 'unknown-error-thrown';
  const location = error instanceof ReasonedError ? error.location : undefined;
  return { reason, message: full ?? error.message, ...(error.stack !== undefined ? { stack: error.stack } : {}), ...(location ? { location } : {}) };
}

/** "no space left on <path>" for an errno error of a full file system (the path written, when it says) */
export function diskFullMessage(e: unknown): string | undefined {
  const { code, path, dest } = (e ?? {}) as NodeJS.ErrnoException & { dest?: string };
  if (code !== 'ENOSPC' && code !== 'EDQUOT') return undefined;
  return `no space left on ${dest ?? path ?? 'the device'}`;
}
