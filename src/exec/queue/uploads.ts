// `--upload`: the model directory and the dataset files a build reads, put into the step store once, for
// workers that cannot read them at the coordinator's paths (no shared filesystem). Each is an entry of kind
// `upload` whose key record holds the digests of its files, so the key is content-addressed: the same model
// is uploaded once whatever its path, and a worker hashing the files it got recomputes the step keys that
// already contain these digests. Jobs carry path → upload key; workers prefer the upload to the path.

import { constants } from 'node:fs';
import { copyFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { digestFile, type DigestStatCache } from '../../cache/file-digest.js';
import { CACHE_FORMAT, computeKey, type Digest, type KeyRecord } from '../../cache/key.js';
import type { RunEvent } from '../events.js';
import { inspectShared, type StepStore } from '../../cache/step-store.js';
import type { Job } from '../jobs.js';
import { sourceFiles } from '../prepare.js';

export const UPLOAD_KIND = 'upload';

/** the sources the jobs read by path: model directories and dataset files */
function sourcesOf(jobs: readonly Job[]): Map<string, 'model' | 'file'> {
  const out = new Map<string, 'model' | 'file'>();
  for (const job of jobs) {
    if (job.node.model?.kind === 'dir') out.set(job.node.model.dir, 'model');
    for (const path of Object.values(job.node.files)) if (!out.has(path)) out.set(path, 'file');
  }
  return out;
}

/** the upload entry's record: the file digests by name, so its key changes exactly when a byte does */
async function uploadRecord(path: string, role: 'model' | 'file', digests: DigestStatCache): Promise<{ record: KeyRecord; files: string[] }> {
  const files = sourceFiles(role, path);
  const named: Record<string, Digest> = {};
  for (const f of files) named[basename(f)] = await digestFile(f, digests);
  return { record: { cacheFormat: CACHE_FORMAT, kind: UPLOAD_KIND, version: 1, params: { role }, inputs: {}, files: named, tools: {} }, files };
}

/** upload every source the jobs read that the store lacks; returns path → upload key for the jobs */
export async function uploadSources(jobs: readonly Job[], store: StepStore, digests: DigestStatCache, emit: (e: RunEvent) => void): Promise<Record<string, Digest>> {
  const keys: Record<string, Digest> = {};
  for (const [path, role] of sourcesOf(jobs)) {
    const { record, files } = await uploadRecord(path, role, digests);
    const key = computeKey(record);
    keys[path] = key;
    if (await inspectShared(store, UPLOAD_KIND, key)) continue;
    const t0 = performance.now();
    const pending = await store.begin(UPLOAD_KIND, key);
    let bytes = 0;
    try {
      for (const f of files) {
        await copyFile(f, join(pending.dir, basename(f)), constants.COPYFILE_FICLONE);
        bytes += (await stat(f)).size;
      }
    } catch (e) {
      await pending.abort();
      throw e;
    }
    await pending.commit({ record, stepId: `upload ${path}`, result: { files: files.length, bytes }, elapsedMs: performance.now() - t0 });
    emit({ event: 'log', level: 'info', message: `uploaded ${path} (${files.length} files, ${bytes} bytes) to ${store.location}` });
  }
  return keys;
}
