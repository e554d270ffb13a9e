// NaN and ±Inf stop the step where they appear, with the module and layer named, for every method: a micro
// model with one NaN weight in layer 1's q_proj fails at the first step that loads layer 1 ('non-finite-weight');
// one whose layer-1 norm overflows float32 fails where the activations become Inf ('non-finite-activation').

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DirStore } from '../../src/cache/dir-store.js';
import type { RunEvent } from '../../src/exec/events.js';
import { prepare } from '../../src/exec/prepare.js';
import { build } from '../../src/exec/run.js';
import { InProcessRunner } from '../../src/exec/runner.js';
import { NonFiniteWeightError, checkFiniteWeight } from '../../src/model/finite.js';
import { HfSource } from '../../src/model/source.js';
import { Runtime } from '../../src/ort/session.js';
import { stepDefs } from '../../src/exec/step-impls.js';
import { f32 } from '../../src/tensor.js';
import { MICRO_TEXT, writeMicroModel } from '../fixtures/micro-model.js';

const STAGES: Record<string, string> = {
  rtn: '  - { kind: rtn, scheme: W8A8 }',
  gptq: '  - { kind: gptq, scheme: W4A16 }',
  awq: '  - { kind: awq, scheme: W4A16_ASYM, n_grid: 2 }',
  smoothquant: '  - { kind: smoothquant, smoothing_strength: 0.5 }\n  - { kind: rtn, scheme: W8A8 }',
  autoround: '  - { kind: autoround, scheme: W4A16, iters: 2, nsamples: 2, batch_size: 2 }',
};

let root: string;
let runtime: Runtime;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'qf-non-finite-'));
  runtime = new Runtime({ device: 'cpu' });
  await writeFile(join(root, 'calib.txt'), MICRO_TEXT);
  await writeMicroModel(join(root, 'nan-weight'), { edit: (name, t) => void (name === 'model.layers.1.self_attn.q_proj.weight' && (t.data[5] = Number.NaN)) });
  await writeMicroModel(join(root, 'overflow'), { edit: (name, t) => void (name === 'model.layers.1.post_attention_layernorm.weight' && t.data.fill(3e38)) });
});
afterAll(async () => {
  await runtime.close();
  await rm(root, { recursive: true, force: true });
});

async function run(model: string, method: string): Promise<Extract<RunEvent, { event: 'step-failed' }> | undefined> {
  const recipe = join(root, `${model}-${method}.yaml`);
  await writeFile(recipe, `quantforge: 1\nmodel: ./${model}\ncalibration: { dataset: ./calib.txt, samples: 2, seq_len: 32 }\nstages:\n${STAGES[method]}\n`);
  const cache = join(root, 'cache');
  const prepared = await prepare(recipe, [], cache, 'cpu');
  if (!prepared.ok) throw new Error(prepared.diagnostics.map((d) => d.message).join('\n'));
  const events: RunEvent[] = [];
  const runner = new InProcessRunner(stepDefs, () => runtime);
  await build(prepared.value, new DirStore(cache), runner, (e) => events.push(e), new AbortController().signal);
  return events.find((e): e is Extract<RunEvent, { event: 'step-failed' }> => e.event === 'step-failed');
}

describe('a NaN weight stops every method at layer 1, naming the module', () => {
  for (const method of Object.keys(STAGES)) {
    test(method, async () => {
      const failed = await run('nan-weight', method);
      expect(failed, 'the run should fail').toBeDefined();
      expect(failed!.reason).toBe('non-finite-weight');
      expect(failed!.id).toMatch(/(layer|capture)\.1$/);
      expect(failed!.message).toContain('model.layers.1.self_attn.q_proj.weight');
      expect(failed!.message).toContain('layer 1, module self_attn.q_proj');
      expect(failed!.message).toContain('1 NaN');
      expect(failed!.message).toContain('[0, 5]');
    });
  }
});

describe('activations that overflow float32 stop the step, naming the layer and the modules', () => {
  for (const method of ['gptq', 'smoothquant', 'awq']) {
    test(method, async () => {
      const failed = await run('overflow', method);
      expect(failed, 'the run should fail').toBeDefined();
      expect(failed!.reason).toBe('non-finite-activation');
      expect(failed!.id).toMatch(/(layer|capture)\.1$/);
      expect(failed!.message).toContain('layer 1: ');
      expect(failed!.message).toMatch(/the inputs of [a-z_.]*mlp\.(gate|up|down)_proj|the output of the decoder layer/);
      console.log(`${method}: ${failed!.id}: ${failed!.message}`);
      expect(failed!.message).toContain('overflowed float32');
    });
  }
});

describe('where weights are checked', () => {
  test('the model reader refuses a NaN weight with its file, module and layer', async () => {
    const src = await HfSource.open(join(root, 'nan-weight'));
    try {
      await src.layer(0);
      const err = (await src.layer(1).catch((e: unknown) => e)) as NonFiniteWeightError;
      expect(err).toBeInstanceOf(NonFiniteWeightError);
      expect(err.module).toBe('model.layers.1.self_attn.q_proj');
      expect(err.layer).toBe(1);
      expect(err.file).toBe(join(root, 'nan-weight', 'model.safetensors'));
    } finally {
      await src.close();
    }
  });

  test('±Inf is refused as NaN is, and counted apart', () => {
    const t = f32([2, 3], [0, Infinity, 1, -Infinity, Number.NaN, 2]);
    expect(() => checkFiniteWeight(t, { name: 'lm_head.weight', file: 'x.safetensors' })).toThrow(
      'x.safetensors: weight lm_head.weight (module lm_head) has 1 NaN and 2 ±Inf values; the first is Infinity at [0, 1] of [2, 3]; expected finite weights',
    );
  });
});
