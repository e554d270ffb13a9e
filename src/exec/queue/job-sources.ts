// What a worker needs before it runs a job, and the check that it may: the model directory and source files
// (at the coordinator's path on a shared filesystem, or uploaded once into the store), the input entries (from
// the shared store, verified), and the job's key recomputed with this worker's own versions. A worker that
// would compute something else than the key describes (other step code, tools, execution provider or file
// contents) refuses the job rather than store a result under a key that lies.

import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { digestFile, type DigestStatCache } from '../../cache/file-digest.js';
import { CACHE_FORMAT, computeKey, explainChange, type KeyRecord } from '../../cache/key.js';
import type { StepStore } from '../../cache/step-store.js';
import type { Provider } from '../../ort/device.js';
import type { StepInputDir } from '../../steps/types.js';
import { fileDigests } from '../jobs.js';
import { sourceFiles, toolVersions } from '../prepare.js';
import type { StepRef } from '../runner.js';
import { stepVersions } from '../step-impls.js';
import { QueueError } from './queue-error.js';
import type { StepJobData } from './step-job.js';

/** where a job's sources are on this worker */
export interface JobSources {
  modelDir: string | undefined;
  files: Record<string, string>;
}

/** the model and source files of a job on this machine: an upload from the store when there is one, else the path */
export async function resolveSources(d: StepJobData, store: StepStore, worker: string): Promise<JobSources> {
  const local = async (path: string, role: string, dir: boolean): Promise<string> => {
    const upload = d.uploads[path];
    if (upload !== undefined) {
      const entry = await store.get('upload', upload);
      if (!entry) throw new QueueError('queue-source-missing', `${d.id}: the upload of ${path} (upload/${upload.slice(0, 12)}) is not in ${store.location}; run the recipe again to upload it`);
      return dir ? entry.dir : join(entry.dir, basename(path));
    }
    if (!existsSync(path)) {
      throw new QueueError(
        'queue-source-missing',
        `worker ${worker} cannot read ${path} (${role} of ${d.id}): workers read the model and datasets at the coordinator's path (a shared filesystem), or from the store when the coordinator runs with --upload`,
      );
    }
    return path;
  };
  let modelDir: string | undefined;
  if (d.model && 'step' in d.model) modelDir = (await inputEntry(d, store, d.model.step)).dir;
  else if (d.model) modelDir = await local(d.model.dir, 'model', true);
  const files: Record<string, string> = {};
  for (const [role, path] of Object.entries(d.files)) files[role] = await local(path, role, false);
  return { modelDir, files };
}

/** every input entry of a job, verified, as the step reads them */
export async function fetchInputs(d: StepJobData, store: StepStore): Promise<Record<string, StepInputDir | StepInputDir[]>> {
  const out: Record<string, StepInputDir | StepInputDir[]> = {};
  for (const [role, refs] of Object.entries(d.inputs)) {
    out[role] = Array.isArray(refs) ? await Promise.all(refs.map((r) => inputEntry(d, store, r))) : await inputEntry(d, store, refs);
  }
  return out;
}

async function inputEntry(d: StepJobData, store: StepStore, ref: StepRef): Promise<StepInputDir> {
  const entry = await store.get(ref.kind, ref.key);
  if (!entry) {
    throw new QueueError('queue-input-missing', `input ${ref.id} (${ref.kind}/${ref.key.slice(0, 12)}) of ${d.id} is not in ${store.location} (removed, or damaged and evicted); run the recipe again to rebuild it`);
  }
  return { id: ref.id, kind: ref.kind, dir: entry.dir, result: entry.meta.result };
}

export interface KeyCheckContext {
  device: Provider;
  digests: DigestStatCache;
  worker: string;
}

let tools: Record<string, string> | undefined;

/** the job's record as this worker would write it: its step version, tool versions, provider and file digests */
export async function reproduceRecord(d: StepJobData, sources: JobSources, ctx: KeyCheckContext): Promise<KeyRecord> {
  const theirs = d.record;
  const version = stepVersions.get(theirs.kind);
  if (version === undefined) throw new QueueError('queue-key-mismatch', `worker ${ctx.worker} refuses ${d.id}: it has no step kind "${theirs.kind}"`);
  const node = { files: sources.files, ...(d.model && 'dir' in d.model && sources.modelDir ? { model: { kind: 'dir' as const, dir: sources.modelDir } } : {}) };
  const files = await fileDigests(node, { digestFile: (p) => digestFile(p, ctx.digests) }, async (role, path) => sourceFiles(role, path));
  tools ??= toolVersions();
  return { cacheFormat: CACHE_FORMAT, kind: theirs.kind, version, params: theirs.params, inputs: theirs.inputs, files, tools, ...(d.deviceDependent ? { device: ctx.device } : {}) };
}

/** refuse (queue-key-mismatch) a job whose record does not hash to its id, or that this worker would compute differently */
export async function checkJobKey(jobId: string, d: StepJobData, sources: JobSources, ctx: KeyCheckContext): Promise<void> {
  if (computeKey(d.record) !== jobId || d.key !== jobId) {
    throw new QueueError('queue-key-mismatch', `worker ${ctx.worker} refuses ${d.id}: the job's key record does not hash to its id ${jobId.slice(0, 12)}`);
  }
  const mine = await reproduceRecord(d, sources, ctx);
  if (computeKey(mine) === jobId) return;
  throw new QueueError(
    'queue-key-mismatch',
    `worker ${ctx.worker} refuses ${d.id}: it would compute a different step than the job's key describes (job → worker: ${explainChange(d.record, mine)}); run workers of the same quantforge, onnxruntime and --device as the coordinator`,
  );
}
