// The execution provider in step keys: a step whose numbers depend on the provider is not reused across
// providers; one declared provider-independent (`deviceDependent: false`: tokenize, embed, the example model,
// outputs) is, as long as its inputs are (keys are Merkle keys: a pack of GPTQ layers computed on webgpu is
// a different pack). Provider-independent steps also run on the CPU provider, so the claim holds.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import type { Job } from '../../src/exec/jobs.js';
import { prepare } from '../../src/exec/prepare.js';
import { build } from '../../src/exec/run.js';
import { InProcessRunner } from '../../src/exec/runner.js';
import { DirStore } from '../../src/cache/dir-store.js';
import type { Json } from '../../src/cache/key.js';
import { Runtime } from '../../src/ort/session.js';
import type { StepContext } from '../../src/steps/types.js';
import { fakeBuild, ranIds } from './build-harness.js';
import { fakeImpls, fakeRecipe, makeFakeModel } from './fake-steps.js';

let dir: string;
let recipe: string;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'qf-device-keys-'));
  await makeFakeModel(join(dir, 'model'), 2);
  recipe = join(dir, 'recipe.yaml');
  writeFileSync(recipe, fakeRecipe('  - { kind: gptq, scheme: W4A16, ignore: [lm_head] }'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** step id → true when neither it nor any step upstream depends on the provider (jobs are in topological order) */
function sharedSteps(jobs: readonly Job[]): Map<string, boolean> {
  const out = new Map<string, boolean>();
  for (const j of jobs) {
    const upstream = [...Object.values(j.node.inputs).flat(), ...(j.node.model?.kind === 'step' ? [j.node.model.step] : [])];
    out.set(j.node.id, !j.node.deviceDependent && upstream.every((id) => out.get(id)));
  }
  return out;
}

describe('the device in step keys', () => {
  test('provider-dependent steps get a key per provider; provider-independent ones share it', async () => {
    const keys = async (device: 'cpu' | 'webgpu' | 'cuda') => {
      const p = await prepare(recipe, [], join(dir, 'cache'), device);
      if (!p.ok) throw new Error('plan failed');
      return { keys: p.value.variants[0]!.keys, jobs: p.value.jobs };
    };
    const [cpu, webgpu, cuda] = [await keys('cpu'), await keys('webgpu'), await keys('cuda')];
    const shared = sharedSteps(cpu.jobs);
    expect([...shared.values()]).toContain(true);
    expect([...shared.values()]).toContain(false);
    for (const [id, key] of cpu.keys) {
      const same = shared.get(id);
      expect(webgpu.keys.get(id) === key, id).toBe(same);
      expect(cuda.keys.get(id) === key, id).toBe(same);
    }
    const record = webgpu.jobs.find((j) => j.node.deviceDependent)!.record;
    expect(record.device).toBe('webgpu');
    expect(webgpu.jobs.find((j) => !j.node.deviceDependent)!.record.device).toBeUndefined();
  });

  test('a cpu run after a webgpu run reuses only the provider-independent steps', async () => {
    const cache = join(dir, 'cache');
    const first = await fakeBuild(recipe, cache, fakeImpls(new Map()), [], 'webgpu');
    expect(first.summary.failed).toBe(0);
    const second = await fakeBuild(recipe, cache, fakeImpls(new Map()), [], 'cpu');
    const p = await prepare(recipe, [], cache, 'cpu');
    if (!p.ok) throw new Error('plan failed');
    const shared = sharedSteps(p.value.jobs);
    const expected = p.value.jobs.filter((j) => !shared.get(j.node.id)).map((j) => j.node.id).sort();
    expect(ranIds(second.events).sort()).toEqual(expected);
    expect(second.summary.cached).toBe(p.value.jobs.length - expected.length);
  });

  test('provider-independent steps run on the CPU runtime whatever the device', async () => {
    const p = await prepare(recipe, [], join(dir, 'cache'), 'webgpu');
    if (!p.ok) throw new Error('plan failed');
    const seen = new Map<string, string>();
    const impls = new Map([...fakeImpls(new Map())].map(([kind, impl]) => [kind, { ...impl, run: (ctx: StepContext<Json>) => (seen.set(ctx.id, ctx.runtime.device), impl.run(ctx)) }]));
    // explicit providers: no probe, and no session until a kernel is asked for
    const [webgpu, cpu] = [new Runtime({ device: 'webgpu' }), new Runtime({ device: 'cpu' })];
    await build(p.value, new DirStore(join(dir, 'cache')), new InProcessRunner(impls, () => webgpu, () => cpu), () => {}, new AbortController().signal);
    for (const j of p.value.jobs) expect(seen.get(j.node.id), j.node.id).toBe(j.node.deviceDependent ? 'webgpu' : 'cpu');
  });
});
