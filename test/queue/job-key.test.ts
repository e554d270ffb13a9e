// A queue worker recomputes a job's key from the job's key record with its own step versions, tool
// versions, execution provider and source-file digests, and refuses (queue-key-mismatch) a job it would
// compute differently, rather than store a result under a key that lies.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { DigestStatCache } from '../../src/cache/file-digest.js';
import { computeKey, type KeyRecord } from '../../src/cache/key.js';
import { DirStore } from '../../src/cache/dir-store.js';
import type { Job } from '../../src/exec/jobs.js';
import { prepare } from '../../src/exec/prepare.js';
import { checkJobKey, resolveSources, type KeyCheckContext } from '../../src/exec/queue/job-sources.js';
import type { StepJobData } from '../../src/exec/queue/step-job.js';
import { makeFakeModel, fakeRecipe } from '../exec/fake-steps.js';

let dir: string;
let jobs: readonly Job[];
let ctx: KeyCheckContext;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'qf-job-key-'));
  await makeFakeModel(join(dir, 'model'), 2);
  writeFileSync(join(dir, 'recipe.yaml'), fakeRecipe('  - { kind: rtn, scheme: W4A16, ignore: [lm_head] }'));
  const prepared = await prepare(join(dir, 'recipe.yaml'), [], join(dir, 'cache'), 'cpu');
  if (!prepared.ok) throw new Error(prepared.diagnostics.map((d) => d.message).join('\n'));
  jobs = prepared.value.jobs;
  ctx = { device: 'cpu', digests: new DigestStatCache(join(dir, 'cache')), worker: 'test-worker' };
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** the job of the first step of `kind` as the coordinator enqueues it, its record changed by `edit` */
function jobData(kind: string, edit: (r: KeyRecord) => KeyRecord = (r) => r): StepJobData {
  const job = jobs.find((j) => j.record.kind === kind)!;
  const record = edit(job.record);
  const { id, group, files, deviceDependent, model } = job.node;
  return { key: computeKey(record), record, id, group, files, deviceDependent, inputs: {}, model: model?.kind === 'dir' ? { dir: model.dir } : undefined, coordinator: 'c', uploads: {} };
}

async function check(d: StepJobData, c: KeyCheckContext = ctx, jobId: string = d.key): Promise<string> {
  const sources = await resolveSources(d, new DirStore(join(dir, 'cache')), c.worker);
  return checkJobKey(jobId, d, sources, c).then(
    () => 'accepted',
    (e: Error & { reason?: string }) => `${e.reason}: ${e.message}`,
  );
}

test('a job this worker would compute the same way is accepted', async () => {
  expect(await check(jobData('tokenize'))).toBe('accepted');
  expect(await check(jobData('rtn'))).toBe('accepted');
});

test('other step code, tool versions or a record that does not hash to the job id: refused, saying what differs', async () => {
  expect(await check(jobData('rtn', (r) => ({ ...r, version: r.version + 1 })))).toMatch(/^queue-key-mismatch: worker test-worker refuses .*version changed: \d+ → \d+/);
  expect(await check(jobData('rtn', (r) => ({ ...r, tools: { ...r.tools, 'onnxruntime-node': '0.0.1' } })))).toMatch(/^queue-key-mismatch: .*tool changed: onnxruntime-node 0\.0\.1 → /);
  const d = jobData('rtn');
  expect(await check(d, ctx, 'f'.repeat(64))).toMatch(/^queue-key-mismatch: .*does not hash to its id/);
});

test('another execution provider for a provider-dependent step, or other bytes in a source file: refused', async () => {
  const evaluate = jobs.find((j) => j.node.deviceDependent);
  expect(evaluate).toBeDefined();
  const d = jobData(evaluate!.record.kind);
  expect(await check(d, { ...ctx, device: 'webgpu' })).toMatch(/^queue-key-mismatch: .*device changed: cpu → webgpu/);

  const tokenize = jobData('tokenize');
  const file = Object.values(tokenize.files)[0]!;
  writeFileSync(file, 'other text than the coordinator hashed\n');
  expect(await check(tokenize)).toMatch(/^queue-key-mismatch: .*file changed: /);
});
