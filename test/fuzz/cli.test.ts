// The fuzzed failures as a user meets them: `quantforge eval|generate|validate|plan` in a child process on a
// damaged model directory exits 2 with one line naming the file and the tensor or field — no stack trace.
// (test/global-setup.ts builds dist/ first.)

import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { writeMicroExports, type MicroExports } from '../fixtures/micro-exports.js';

const CLI = resolve(import.meta.dirname, '../../bin/quantforge.js');
const run = promisify(execFile);

let root: string;
let exports: MicroExports;
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'qf-fuzz-cli-'));
  exports = await writeMicroExports(join(root, 'exports'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { cwd: root, env: { ...process.env, CI: '1' } });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/** a copy of `dir` to damage */
function copy(dir: string, name: string): string {
  const to = join(root, name);
  cpSync(dir, to, { recursive: true });
  return to;
}

function expectOneLine(stderr: string, ...parts: string[]): void {
  const lines = stderr.trim().split('\n');
  expect(lines, stderr).toHaveLength(1);
  expect(stderr).not.toMatch(/^\s+at /m);
  for (const p of parts) expect(stderr).toContain(p);
}

const evalArgs = (model: string) => ['eval', '--model', model, '--dataset', exports.dataset, '--seq-len', '16', '--device', 'cpu'];

describe('quantforge on damaged model directories exits 2 with one line', () => {
  test('eval: a truncated model.safetensors names the file and the tensor past its end', async () => {
    const dir = copy(exports.model, 'truncated');
    truncateSync(join(dir, 'model.safetensors'), 60_000);
    const r = await cli(evalArgs(dir));
    expect(r.code).toBe(2);
    expectOneLine(r.stderr, 'quantforge eval: ', join(dir, 'model.safetensors'), 'data_offsets', 'truncated');
  });

  test('eval: config.json with a hidden_size that is a string names the file and the field', async () => {
    const dir = copy(exports.model, 'bad-config');
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, hidden_size: '32' }));
    const r = await cli(evalArgs(dir));
    expect(r.code).toBe(2);
    expectOneLine(r.stderr, join(dir, 'config.json'), '"hidden_size"', 'a positive integer');
  });

  test('eval: a compressed-tensors checkpoint whose quantization_config has num_bits 9', async () => {
    const dir = copy(exports.compressedTensors.asym, 'ct-bits');
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { quantization_config: { config_groups: { group_0: { weights: { num_bits: number } } } } };
    config.quantization_config.config_groups.group_0.weights.num_bits = 9;
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    const r = await cli(evalArgs(dir));
    expect(r.code).toBe(2);
    expectOneLine(r.stderr, join(dir, 'config.json'), 'quantization_config.config_groups.group_0.weights.num_bits', 'from 2 to 8');
  });

  test('generate: an ONNX export whose model.onnx is cut short', async () => {
    const dir = copy(exports.onnx, 'onnx-cut');
    truncateSync(join(dir, 'onnx', 'model.onnx'), 5000);
    const r = await cli(['generate', '--model', dir, '--prompt', 'the cat', '--max-new-tokens', '2', '--device', 'cpu']);
    expect(r.code).toBe(2);
    expectOneLine(r.stderr, 'quantforge generate: ', join(dir, 'onnx', 'model.onnx'), 'onnxruntime cannot load it');
  });

  test('eval: a dataset that does not exist', async () => {
    const r = await cli(['eval', '--model', exports.model, '--dataset', join(root, 'nowhere.txt'), '--device', 'cpu']);
    expect(r.code).toBe(2);
    expectOneLine(r.stderr, join(root, 'nowhere.txt'), 'no such dataset file');
  });

  test('validate and plan: a truncated model fails before any step, naming the file and the tensor', async () => {
    const dir = copy(exports.model, 'truncated-plan');
    truncateSync(join(dir, 'model.safetensors'), 60_000);
    const recipe = join(root, 'truncated.yaml');
    writeFileSync(recipe, `quantforge: 1\nmodel: ./truncated-plan\ncalibration: { dataset: ./text.txt, samples: 2, seq_len: 16 }\nstages:\n  - { kind: rtn, scheme: W8A8 }\n`);
    cpSync(exports.dataset, join(root, 'text.txt'));
    for (const command of ['validate', 'plan']) {
      const r = await cli([command, recipe, '--cache-dir', join(root, 'cache')]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(join(dir, 'model.safetensors'));
      expect(r.stderr).toMatch(/tensor "model\.[a-z_.0-9]+": data_offsets/);
      expect(r.stderr).not.toMatch(/^\s+at /m);
    }
  });
});
