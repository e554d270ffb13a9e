// The gguf output writes llama.cpp's `llama` architecture keys: a model of another architecture is a plan
// error at the output, before any compute, naming its model_type and the ones the writer supports.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { rm } from 'node:fs/promises';
import { compilePlan } from '../../src/plan/compile.js';
import { loadRecipe } from '../../src/recipe/load.js';
import { writeArchModel } from '../fixtures/arch-models.js';

let dir: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'qf-gguf-arch-'));
  await writeArchModel(join(dir, 'qwen3'), 'qwen3');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

function plan(model: string, format: string): { ok: boolean; diagnostics: { severity: string; code: string; message: string }[] } {
  const path = join(dir, `${format}.yaml`);
  writeFileSync(path, `quantforge: 1\nmodel: ${model}\nstages:\n  - { kind: rtn, scheme: ${format === 'gguf' ? 'GGUF_Q8_0' : 'W8A16'}, targets: [Linear], ignore: [lm_head] }\noutputs:\n  - { format: ${format}, path: out }\n`);
  const loaded = loadRecipe(path);
  if (!loaded.ok) throw new Error(loaded.error.map((d) => d.message).join('; '));
  const r = compilePlan(loaded.value);
  return { ok: r.ok, diagnostics: [...(r.ok ? r.value.warnings : r.error)] };
}

describe('gguf output: the model architecture', () => {
  test('a qwen3 model is a plan error at the output naming qwen3 and the supported model types', () => {
    const r = plan(join(dir, 'qwen3'), 'gguf');
    expect(r.ok).toBe(false);
    const errors = r.diagnostics.filter((d) => d.severity === 'error');
    expect(errors.map((d) => d.code)).toEqual(['unsupported-output-model']);
    expect(errors[0]!.message).toMatch(/model_type "qwen3".*llama, mistral/);
  });

  test('the same model plans with compressed-tensors, and the llama example plans with gguf', () => {
    expect(plan(join(dir, 'qwen3'), 'compressed-tensors').ok).toBe(true);
    expect(plan('{ example: tiny }', 'gguf').ok).toBe(true);
  });
});
