// Errors of the files quantforge reads and writes for itself, each naming the file: a JSON file that does
// not parse (a lock file, a run's history, a package.json; the readers of the user's model files have reasons
// of their own), and a file system that filled up while a step, a commit or an output was being written.

import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { diskFullMessage, ReasonedError } from './failure.js';

export class JsonFileError extends ReasonedError<'json-file-invalid'> {
  readonly file: string;
  constructor(file: string, cause: unknown) {
    super('json-file-invalid', `${file}: not valid JSON (${cause instanceof Error ? cause.message : String(cause)})`, { cause });
    this.file = file;
  }
}

/** `text`, read from `file`, parsed; a syntax error becomes a JsonFileError naming the file */
export function parseJsonFile(file: string, text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new JsonFileError(file, e);
  }
}

/** read and parse a JSON file (read errors name the file already: ENOENT, EACCES …) */
export function readJsonFile(file: string): unknown {
  return parseJsonFile(file, readFileSync(file, 'utf8'));
}

export async function readJsonFileAsync(file: string): Promise<unknown> {
  return parseJsonFile(file, await readFile(file, 'utf8'));
}

/** no space left while writing `path` (a step's directory, an output, a cache entry) */
export class DiskFullError extends ReasonedError<'disk-full'> {
  readonly path: string;
  constructor(path: string, cause?: unknown) {
    super('disk-full', `no space left on ${path}`, cause === undefined ? {} : { cause });
    this.path = path;
  }
}

/**
 * `e` as a DiskFullError naming `path` when it says the file system is full (an ENOSPC or EDQUOT error, or
 * a disk-full failure sent by the compute worker, whose writes through file handles name no path); any
 * other error as it is
 */
export function onFullDisk(e: unknown, path: string): unknown {
  if (e instanceof DiskFullError) return e;
  const full = e instanceof ReasonedError ? e.reason === 'disk-full' : diskFullMessage(e) !== undefined;
  return full ? new DiskFullError(path, e) : e;
}
