// Failures keep their reason through the compute worker thread: steps run by the real WorkerRunner (the one
// `quantforge run` uses) on broken inputs reject with the step's own reason, never `unknown-error-thrown`,
// and a build reports it in its step-failed event together with the recipe line the step came from.

import { cp, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DirStore } from '../../src/cache/dir-store.js';
import { ReasonedError } from '../../src/diag/failure.js';
import type { RunEvent } from '../../src/exec/events.js';
import { prepare } from '../../src/exec/prepare.js';
import { build } from '../../src/exec/run.js';
import { WorkerRunner, type StepRequest } from '../../src/exec/runner.js';
import { SafetensorsFile, writeSafetensors } from '../../src/formats/safetensors.js';
import type { ModuleQuant } from '../../src/quant/module-quant.js';
import { presetScheme } from '../../src/quant/scheme.js';
import type { GptqParams } from '../../src/steps/gptq.js';
import { Runtime } from '../../src/ort/session.js';
import { tensor, type Tensor } from '../../src/tensor.js';
import { writeTinyModel, type TinyModel } from '../steps/tiny-model.js';

const rt = new Runtime({ device: 'cpu' });
const runner = new WorkerRunner({ device: 'cpu', threads: 2 });
let tiny: TinyModel;

// 4 windows of 64 tokens: 256 tokens, so down_proj's 688 input features make a rank-deficient Hessian
beforeAll(async () => {
  tiny = await writeTinyModel(rt, 'worker-failures', 4, 64);
});

afterAll(async () => {
  await runner.close();
  await rt.close();
  await tiny.close();
});

const W4A16 = presetScheme('W4A16', ['Linear']);
const quant: ModuleQuant = { weights: W4A16.weights!, input_activations: null };

function gptq(modules: string[], extra: Partial<GptqParams> = {}): GptqParams {
  return { layer: 0, modules: Object.fromEntries(modules.map((m) => [m, quant])), block_size: 128, dampening_frac: 0.01, actorder: 'static', offload_hessians: false, ...extra };
}

/** a copy of the tiny model whose weights file `change` rewrites */
async function brokenModel(name: string, change: (file: string) => Promise<void>): Promise<string> {
  const dir = join(tiny.root, name);
  await cp(tiny.modelDir, dir, { recursive: true });
  await change(join(dir, 'model.safetensors'));
  return dir;
}

/** rewrites a weights file with one NaN in layer 0's q_proj */
async function plantNaN(file: string): Promise<void> {
  const f = await SafetensorsFile.open(file);
  const tensors: [string, Tensor][] = [];
  for (const name of f.names()) tensors.push([name, await f.read(name)]);
  await f.close();
  const at = tensors.findIndex(([n]) => n === 'model.layers.0.self_attn.q_proj.weight');
  const w = tensors[at]![1] as Tensor<'float32'>;
  const data = Float32Array.from(w.data);
  data[7] = NaN;
  tensors[at] = [tensors[at]![0], tensor('float32', w.dims, data)];
  await writeSafetensors(file, tensors);
}

async function runInWorker(kind: string, params: unknown, modelDir: string): Promise<unknown> {
  const outDir = await mkdtemp(join(tiny.root, 'out-'));
  const inputs: StepRequest['inputs'] = { hidden: { id: 'embed/calibration', kind: 'embed', dir: tiny.embedDir, result: null } };
  const request: StepRequest = { id: `stage1.${kind}/layer.0`, kind, params, inputs, files: {}, modelDir, outDir, deviceDependent: true };
  return runner.run(request, { progress: () => {}, warn: () => {} }, new AbortController().signal);
}

async function reasonOf(run: Promise<unknown>): Promise<{ reason: string; message: string; isReasoned: boolean }> {
  try {
    await run;
  } catch (e) {
    return { reason: (e as ReasonedError).reason, message: (e as Error).message, isReasoned: e instanceof ReasonedError };
  }
  throw new Error('expected the step to fail');
}

describe('WorkerRunner failures', () => {
  test('a truncated model.safetensors fails with the reader\'s reason', async () => {
    const dir = await brokenModel('truncated', async (file) => truncate(file, Math.floor(statSync(file).size / 2)));
    const failure = await reasonOf(runInWorker('propagate', { layer: 0 }, dir));
    expect(failure).toMatchObject({ reason: 'offsets-out-of-bounds', isReasoned: true });
    expect(failure.message).toContain('model.safetensors');
  });

  test('a NaN weight fails the step with non-finite-weight, naming the module', async () => {
    const dir = await brokenModel('nan-weight', plantNaN);
    const failure = await reasonOf(runInWorker('gptq', gptq(['self_attn.q_proj']), dir));
    expect(failure).toMatchObject({ reason: 'non-finite-weight', isReasoned: true });
    expect(failure.message).toContain('model.layers.0.self_attn.q_proj');
  });

  test('a singular Hessian with dampening escalation off fails with gptq-singular-hessian', async () => {
    const failure = await reasonOf(runInWorker('gptq', gptq(['mlp.down_proj'], { dampening_frac: 0, escalate_dampening: false }), tiny.modelDir));
    expect(failure).toMatchObject({ reason: 'gptq-singular-hessian', isReasoned: true });
    expect(failure.message).toContain('model.layers.0.mlp.down_proj');
  });

  test('the same singular Hessian with escalation on (the default) is dampened and the step succeeds', async () => {
    const result = (await runInWorker('gptq', gptq(['mlp.down_proj'], { dampening_frac: 0 }), tiny.modelDir)) as { modules: Record<string, { dampening_frac: number }> };
    expect(result.modules['mlp.down_proj']!.dampening_frac).toBeGreaterThan(0);
  });

  test('an error without a reason is unknown-error-thrown', async () => {
    const failure = await reasonOf(runInWorker('no-such-kind', {}, tiny.modelDir));
    expect(failure).toMatchObject({ reason: 'unknown-error-thrown', message: 'no implementation for step kind "no-such-kind"' });
  });
});

describe('a build through the WorkerRunner', () => {
  test('reports the failing step\'s own reason and the recipe line of its stage', async () => {
    const root = await mkdtemp(join(tmpdir(), 'qf-worker-build-'));
    try {
      // a truncated file would be refused when planning (model-check.ts reads every header); a NaN needs the values
      await cp(tiny.modelDir, join(root, 'model'), { recursive: true });
      await plantNaN(join(root, 'model', 'model.safetensors'));
      const recipe = join(root, 'recipe.yaml');
      await writeFile(recipe, 'quantforge: 1\nmodel: ./model\nstages:\n  - kind: rtn\n    scheme: W4A16\n');
      const prepared = await prepare(recipe, [], join(root, 'cache'), 'cpu');
      if (!prepared.ok) throw new Error(prepared.diagnostics.map((d) => d.message).join('\n'));
      const events: RunEvent[] = [];
      const outcome = await build(prepared.value, new DirStore(join(root, 'cache')), runner, (e) => events.push(e), new AbortController().signal);
      expect(outcome.exec).toMatchObject({ ok: false, failed: 1 });
      const failed = events.find((e) => e.event === 'step-failed');
      expect(failed).toMatchObject({ event: 'step-failed', id: 'stage1.rtn/layer.0', reason: 'non-finite-weight', location: { path: recipe, line: 4, column: 5 } });
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
