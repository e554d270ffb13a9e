// The CLI on llm-compressor recipes, as a user runs it (node bin/quantforge.js, built by the global setup):
// import to stdout or a file, validate reporting the placeholders, plan on a real model, an llm-compressor
// recipe given to plan directly, and an unsupported modifier: exit codes and messages.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, expect, test } from 'vitest';
import { haveShared, REPO, sharedData, sharedModel } from '../e2e/shared.js';

const CLI = join(REPO, 'bin/quantforge.js');
const tmp = mkdtempSync(join(tmpdir(), 'qf-llmc-cli-'));
const cache = process.env['QUANTFORGE_TEST_CACHE'] ?? join(tmp, 'cache');
const fixture = (name: string) => `test/fixtures/recipes/llm-compressor/${name}.yaml`;
const needShared = !haveShared && process.env['QUANTFORGE_REQUIRE_SHARED'] !== '1';

function quantforge(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: REPO, encoding: 'utf8', env: { ...process.env, CI: '1' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('quantforge import llm-compressor (CLI)', () => {
  test('--help names every option', () => {
    const r = quantforge('import', '--help');
    expect(r.code).toBe(0);
    for (const option of ['llm-compressor', '-o, --output FILE', '--model DIR', '--dataset FILE', '--output-dir DIR', 'QuantizationModifier → rtn']) expect(r.stdout).toContain(option);
  });

  test('prints the recipe on stdout; validate reports the placeholders (exit 2)', () => {
    const printed = quantforge('import', 'llm-compressor', fixture('gptq-w4a16'));
    expect(printed.code).toBe(0);
    expect(printed.stdout).toMatch(/^# quantforge recipe imported from the llm-compressor recipe test\/fixtures\/recipes\/llm-compressor\/gptq-w4a16\.yaml/);
    expect(printed.stdout).toContain('  - kind: gptq\n    targets: [Linear]\n    scheme: W4A16');
    const out = join(tmp, 'placeholders.yaml');
    const written = quantforge('import', 'llm-compressor', fixture('gptq-w4a16'), '-o', out);
    expect([written.code, written.stdout.split('\n')[0]]).toEqual([0, `wrote ${out}: GPTQModifier → gptq`]);
    const validated = quantforge('validate', out);
    expect(validated.code).toBe(2);
    expect(validated.stderr.match(/replace this placeholder/g)).toHaveLength(2);
  });

  test('an unsupported modifier: exit 2 at its line, from import and from validate', () => {
    const expected = `${fixture('invalid/unsupported-modifier')}:3:5 not supported by quantforge: modifier "SparseGPTModifier"`;
    const imported = quantforge('import', 'llm-compressor', fixture('invalid/unsupported-modifier'));
    expect([imported.code, imported.stdout]).toEqual([2, '']);
    expect(imported.stderr).toContain(expected);
    const validated = quantforge('validate', fixture('invalid/unsupported-modifier'), '--model', 'm', '--dataset', 'd');
    expect(validated.code).toBe(2);
    expect(validated.stderr).toContain(expected);
  });

  test.skipIf(needShared)('with --model and --dataset the imported recipe plans; plan also takes the llm-compressor recipe itself', () => {
    const model = relative(REPO, sharedModel('stories260K'));
    const dataset = relative(REPO, sharedData('tinystories-calib.txt'));
    const out = join(tmp, 'sq', 'recipe.yaml');
    const imported = quantforge('import', 'llm-compressor', fixture('smoothquant-gptq-w8a8'), '-o', out, '--model', model, '--dataset', dataset);
    expect(imported.code).toBe(0);
    expect(readFileSync(out, 'utf8')).toMatch(/^model: \S*stories260K$/m);
    const planned = quantforge('plan', out, '--cache-dir', cache);
    expect(planned.code).toBe(0);
    expect(planned.stdout).toMatch(/stage2\.gptq/);
    const direct = quantforge('plan', fixture('smoothquant-gptq-w8a8'), '--model', model, '--dataset', dataset, '--output-dir', join(tmp, 'out'), '--cache-dir', cache);
    expect(direct.code).toBe(0);
    expect(direct.stderr).toContain('note: smoothquant-gptq-w8a8.yaml is an llm-compressor recipe, converted in memory: SmoothQuantModifier → smoothquant, GPTQModifier → gptq');
    expect(direct.stdout).toContain('pack/compressed-tensors');
    expect(direct.stdout.split('\n').filter((l) => l.includes('stage'))).toEqual(planned.stdout.split('\n').filter((l) => l.includes('stage')));
  });
});
