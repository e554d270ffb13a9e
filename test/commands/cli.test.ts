// Every command as a user runs it: `node bin/quantforge.js …` in a child process (the CLI's worker-thread
// runner, not the in-process one the e2e tests use), with its exit code and its key output, on the synthetic
// example model: example, validate (exit 2 with file:line:col), plan --json, run interrupted by SIGINT (exit
// 1, not a crash; the step's temporary entry is removed, the rerun resumes), eval and generate on the three
// kinds of model directory, cache ls|verify|gc --max-size|clean. `sweep` runs in test/conformance/compressed-tensors.test.ts.

import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CLI, cli, cliOk } from '../conformance/cli-run.js';

let root: string;
const RECIPE = `quantforge: 1
model: ./model
calibration: { dataset: ./model/calib.txt, samples: 16, seq_len: 64 }
stages:
  - { kind: gptq, scheme: W4A16, targets: [Linear], ignore: [lm_head] }
evaluate:
  perplexity: { dataset: ./model/eval.txt, seq_len: 64, max_windows: 4 }
outputs:
  - { format: compressed-tensors, path: ./out/ct }
  - { format: onnx, path: ./out/onnx }
`;

type Event = Record<string, unknown> & { event: string };

/** `run --json`; with `interruptAt`, SIGINT once that step has a temporary entry in the store */
function runJson(interruptAt?: string): Promise<{ code: number | null; signal: string | null; events: Event[]; stderr: string; tempEntry?: string }> {
  const child = spawn(process.execPath, [CLI, 'run', 'recipe.yaml', '--json', '--cache-dir', 'cache', '--device', 'cpu'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const events: Event[] = [];
  let buf = '';
  let tempEntry: string | undefined;
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const e = JSON.parse(buf.slice(0, i)) as Event;
      buf = buf.slice(i + 1);
      events.push(e);
      if (interruptAt && e.event === 'step-start' && e['id'] === interruptAt) {
        // the step writes into cache/tmp/<step>-<suffix> until it commits; interrupt while that exists
        const tmp = join(root, 'cache', 'tmp');
        const poll = setInterval(() => {
          const names = existsSync(tmp) ? readdirSync(tmp) : [];
          if (names.length === 0) return;
          clearInterval(poll);
          tempEntry = names[0];
          child.kill('SIGINT');
        }, 5);
        child.once('exit', () => clearInterval(poll));
      }
    }
  });
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, events, stderr, ...(tempEntry ? { tempEntry } : {}) })));
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'qf-cli-'));
  const out = await cliOk(['example', 'model', '--seed', '0'], root);
  expect(out).toMatch(/^wrote .*model: 4 layers/);
  writeFileSync(join(root, 'recipe.yaml'), RECIPE);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('the CLI as a child process', () => {
  test('validate: a valid recipe exits 0; an invalid value exits 2 naming file:line:col', async () => {
    const ok = await cli(['validate', 'recipe.yaml'], root);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/recipe\.yaml: valid/);
    const bad = RECIPE.replace('scheme: W4A16', 'scheme: W5A16');
    writeFileSync(join(root, 'bad.yaml'), bad);
    const lines = bad.split('\n');
    const line = lines.findIndex((l) => l.includes('W5A16'));
    const r = await cli(['validate', 'bad.yaml'], root);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`bad.yaml:${line + 1}:${lines[line]!.indexOf('W5A16') + 1}`);
    expect(r.stderr).toContain('W5A16');
    expect(r.stderr).not.toMatch(/\n\s+at /); // one diagnostic, no stack trace
  });

  test('plan --json lists every step to run before the first build', async () => {
    const r = await cli(['plan', 'recipe.yaml', '--json', '--cache-dir', 'cache'], root);
    expect(r.code).toBe(0);
    const plan = JSON.parse(r.stdout) as { event: string; steps: { id: string; kind: string; state: string }[] };
    expect(plan.event).toBe('plan');
    const ids = plan.steps.map((s) => s.id);
    for (const id of ['stage1.gptq/layer.0', 'stage1.gptq/layer.3', 'pack/compressed-tensors', 'evaluate/fp', 'evaluate/quantized']) expect(ids).toContain(id);
    expect(plan.steps.every((s) => s.state === 'run')).toBe(true);
  });

  test('SIGINT during a GPTQ layer: the run stops, the step\'s temporary entry is gone, the rerun resumes there', async () => {
    const stopped = await runJson('stage1.gptq/layer.2');
    expect(stopped.tempEntry).toBeDefined();
    expect({ code: stopped.code, signal: stopped.signal }, stopped.stderr).toEqual({ code: 1, signal: null });
    const done = stopped.events.filter((e) => e.event === 'step-done').map((e) => e['id']);
    expect(done).toEqual(expect.arrayContaining(['stage1.gptq/layer.0', 'stage1.gptq/layer.1']));
    expect(done).not.toContain('stage1.gptq/layer.3');
    expect(stopped.events.some((e) => e.event === 'log' && /interrupted/.test(String(e['message'])))).toBe(true);
    expect(readdirSync(join(root, 'cache', 'tmp'))).toEqual([]);
    expect(existsSync(join(root, 'out', 'ct'))).toBe(false);

    const plan = JSON.parse((await cli(['plan', 'recipe.yaml', '--json', '--cache-dir', 'cache'], root)).stdout) as { steps: { id: string; state: string }[] };
    const state = (id: string): string | undefined => plan.steps.find((s) => s.id === id)?.state;
    expect([state('stage1.gptq/layer.1'), state('stage1.gptq/layer.3')]).toEqual(['fresh', 'run']);
    expect(state('stage1.gptq/layer.2')).toBe(done.includes('stage1.gptq/layer.2') ? 'fresh' : 'run');

    const rerun = await runJson();
    expect(rerun.code).toBe(0);
    const summary = rerun.events.find((e) => e.event === 'summary') as unknown as { steps: Record<string, { ran: number; cached: number }> };
    // the layers finished before the interruption are reused (layer 2 too if it finished before its next abort check)
    const layersDone = done.filter((id) => String(id).startsWith('stage1.gptq/')).length;
    expect(summary.steps['gptq']).toEqual({ ran: 4 - layersDone, cached: layersDone });
    expect(rerun.events.filter((e) => e.event === 'output').map((e) => e['format'])).toEqual(expect.arrayContaining(['compressed-tensors', 'onnx']));
  });

  test('eval on the written checkpoint reproduces the run\'s quantized perplexity', async () => {
    const rerun = await runJson();
    const summary = rerun.events.find((e) => e.event === 'summary') as unknown as { ran: number; metrics: { perplexity: { quantized: number } } };
    expect(summary.ran).toBe(0);
    const r = JSON.parse(await cliOk(['eval', '--model', 'out/ct', '--dataset', 'model/eval.txt', '--seq-len', '64', '--max-windows', '4', '--json', '--device', 'cpu'], root)) as { perplexity: number; windows: number; format: string };
    expect([r.format, r.windows]).toEqual(['compressed-tensors', 4]);
    expect(Math.abs(r.perplexity - summary.metrics.perplexity.quantized) / r.perplexity).toBeLessThan(1e-4);
  });

  test('generate on the fp model, the compressed-tensors checkpoint and the ONNX export', async () => {
    const formats: string[] = [];
    for (const dir of ['model', 'out/ct', 'out/onnx']) {
      const r = await cli(['generate', '--model', dir, '--prompt', 'the cat saw', '--max-new-tokens', '6', '--json', '--device', 'cpu'], root);
      expect(r.code, r.stderr).toBe(0);
      const g = JSON.parse(r.stdout) as { format: string; ids: number[]; new_tokens: number; text: string };
      expect(g.text.startsWith('the cat saw')).toBe(true);
      // stops early only at EOS
      expect(g.new_tokens === 6 || g.ids.at(-1) === 2).toBe(true);
      formats.push(g.format);
    }
    expect(new Set(formats).size).toBe(3);
    expect(formats).toContain('compressed-tensors');
    expect(formats).toContain('onnx');
    const missing = await cli(['generate', '--model', 'nowhere', '--prompt', 'x'], root);
    expect(missing.code).toBe(2);
  });

  test('cache ls, verify (a damaged entry exits 1), gc --max-size, clean', async () => {
    const ls = async (): Promise<{ kind: string; key: string; bytes: number }[]> => (JSON.parse(await cliOk(['cache', 'ls', '--json', '--cache-dir', 'cache'], root)) as { entries: { kind: string; key: string; bytes: number }[] }).entries;
    const before = await ls();
    expect(before.filter((e) => e.kind === 'gptq')).toHaveLength(4);
    expect(before.filter((e) => e.kind === 'gptq').every((e) => e.bytes > 0)).toBe(true);
    expect((await cli(['cache', 'verify', '--cache-dir', 'cache'], root)).code).toBe(0);

    // damage one GPTQ layer state: verify names it and exits 1
    const victim = before.find((e) => e.kind === 'gptq')!;
    const dir = join(root, 'cache', victim.kind, victim.key);
    const file = readdirSync(dir).find((f) => f.endsWith('.safetensors'))!;
    appendFileSync(join(dir, file), 'x');
    const verify = await cli(['cache', 'verify', '--cache-dir', 'cache'], root);
    expect(verify.code).toBe(1);
    expect(verify.stdout).toContain(`damaged ${victim.kind}/${victim.key.slice(0, 12)}`);

    // gc removes the damaged entry, then least recently used ones until the store fits
    const limit = 1 << 20;
    const gc = JSON.parse(await cliOk(['cache', 'gc', '--max-size', '1M', '--json', '--cache-dir', 'cache'], root)) as { removed: unknown[]; remainingBytes: number };
    expect(gc.removed.length).toBeGreaterThan(1);
    expect(gc.remainingBytes).toBeLessThanOrEqual(limit);
    const after = await ls();
    expect(after.some((e) => e.key === victim.key)).toBe(false);
    expect(after.reduce((s, e) => s + e.bytes, 0)).toBeLessThanOrEqual(limit);

    const clean = await cli(['cache', 'clean', '--cache-dir', 'cache'], root);
    expect(clean.code).toBe(0);
    expect(clean.stdout).toMatch(/^removed \d+ entries/);
    expect(await ls()).toEqual([]);
    const bad = await cli(['cache', 'prune', '--cache-dir', 'cache'], root);
    expect(bad.code).toBe(2);
  });
});
