// The real planner and executor over fake steps, on an S3 store shared by two "machines" (two local
// copies): what one machine built, the other reuses without running it, downloading only what a step or an
// output reads.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, expect, test } from 'vitest';
import { DirStore } from '../../src/cache/dir-store.js';
import { S3Store } from '../../src/cache/s3-store.js';
import { parseStoreSpec } from '../../src/cache/store.js';
import type { RunEvent } from '../../src/exec/events.js';
import { prepare } from '../../src/exec/prepare.js';
import { build } from '../../src/exec/run.js';
import { InProcessRunner } from '../../src/exec/runner.js';
import { Runtime } from '../../src/ort/session.js';
import { ranIds } from '../exec/build-harness.js';
import { fakeImpls, fakeRecipe, makeFakeModel } from '../exec/fake-steps.js';
import { startS3, useS3Credentials, type TestS3 } from './s3-server.js';

const LAYERS = 3;
let s3: TestS3;
let dir: string;
let recipe: string;
const stores: S3Store[] = [];
let restoreEnv: () => void;

beforeAll(async () => {
  restoreEnv = useS3Credentials();
  s3 = await startS3();
});
afterAll(async () => {
  await s3.close();
  restoreEnv();
});
beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'qf-s3-build-'));
  await makeFakeModel(join(dir, 'model'), LAYERS);
  recipe = join(dir, 'recipe.yaml');
  writeFileSync(recipe, fakeRecipe('  - { kind: rtn, scheme: W4A16, ignore: [lm_head] }'));
});
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
  rmSync(dir, { recursive: true, force: true });
});

/** one build on `machine` (its own local copy) against the shared bucket */
async function buildOn(machine: string, calls: Map<string, number>, sets: string[] = []): Promise<RunEvent[]> {
  const local = join(dir, `${machine}-local`);
  const spec = parseStoreSpec(`s3://${s3.bucket}/build`);
  if (spec.kind !== 's3') throw new Error('s3');
  const store = await S3Store.open(spec, { local: new DirStore(local), endpoint: s3.endpoint });
  stores.push(store);
  const prepared = await prepare(recipe, sets, local, 'cpu');
  if (!prepared.ok) throw new Error(prepared.diagnostics.map((d) => d.message).join('\n'));
  const events: RunEvent[] = [];
  let rt: Runtime | undefined;
  const runner = new InProcessRunner(fakeImpls(calls), () => (rt ??= new Runtime({ device: 'cpu' })));
  await build(prepared.value, store, runner, (e) => events.push(e), new AbortController().signal);
  return events;
}

const summaryOf = (events: RunEvent[]) => events.find((e): e is Extract<RunEvent, { event: 'summary' }> => e.event === 'summary')!;

test('a second machine reuses every step the first built and writes the same output', async () => {
  const first = await buildOn('a', new Map());
  expect(summaryOf(first).failed).toBe(0);
  const output = readFileSync(join(dir, 'out', 'model', 'out.txt'));
  rmSync(join(dir, 'out'), { recursive: true });

  const calls = new Map<string, number>();
  const second = await buildOn('b', calls);
  expect(summaryOf(second)).toMatchObject({ ran: 0, failed: 0, cached: summaryOf(first).ran });
  expect(calls.size).toBe(0);
  expect(readFileSync(join(dir, 'out', 'model', 'out.txt'))).toEqual(output);

  // a changed evaluation on the second machine: only evaluation runs, on inputs downloaded from the bucket
  writeFileSync(recipe, fakeRecipe('  - { kind: rtn, scheme: W4A16, ignore: [lm_head] }').replace('seq_len: 8 }\noutputs', 'seq_len: 8, max_windows: 3 }\noutputs'));
  const third = await buildOn('b', calls);
  expect(ranIds(third).sort()).toEqual(['evaluate/fp', 'evaluate/quantized', 'report', 'tokenize/evaluation']);
});
