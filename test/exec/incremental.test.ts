// The build engine as make: counting fake steps over the real planner, executor and cache.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { fakeBuild, ranIds } from './build-harness.js';
import { fakeImpls, fakeRecipe, makeFakeModel } from './fake-steps.js';

const LAYERS = 20;
const STAGES = `  - { kind: smoothquant, smoothing_strength: 0.5 }
  - { kind: gptq, scheme: W8A8, ignore: [lm_head] }`;

let dir: string;
let recipe: string;
let cache: string;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'qf-incr-'));
  await makeFakeModel(join(dir, 'model'), LAYERS);
  recipe = join(dir, 'recipe.yaml');
  cache = join(dir, 'cache');
  writeFileSync(recipe, fakeRecipe(STAGES));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const count = (ids: string[], prefix: string): number => ids.filter((id) => id.includes(prefix)).length;

describe('incremental builds', () => {
  test('a second run of an unchanged recipe runs no step', async () => {
    const calls = new Map<string, number>();
    const first = await fakeBuild(recipe, cache, fakeImpls(calls));
    expect(first.summary.failed).toBe(0);
    expect(first.summary.ran).toBeGreaterThan(3 * LAYERS);
    const second = await fakeBuild(recipe, cache, fakeImpls(calls));
    expect(second.summary.ran).toBe(0);
    expect(second.summary.cached).toBe(first.summary.ran);
    expect([...calls.values()].every((n) => n === 1)).toBe(true);
  });

  test('changing one stage parameter reruns that stage for every layer and only its descendants', async () => {
    await fakeBuild(recipe, cache, fakeImpls(new Map()));
    writeFileSync(recipe, fakeRecipe(STAGES.replace('smoothing_strength: 0.5', 'smoothing_strength: 0.8')));
    const { summary, events } = await fakeBuild(recipe, cache, fakeImpls(new Map()));
    const ran = ranIds(events);
    expect(count(ran, 'stage1.smoothquant/layer.')).toBe(LAYERS);
    expect(count(ran, 'stage1.smoothquant/capture.')).toBe(0);
    expect(count(ran, 'stage2.gptq/layer.')).toBe(LAYERS);
    expect(ran).toEqual(expect.arrayContaining(['pack/compressed-tensors', 'evaluate/quantized', 'report']));
    expect(ran).not.toContain('evaluate/fp');
    expect(ran).not.toContain('tokenize/calibration');
    expect(summary.ran).toBe(2 * LAYERS + 3);
  });

  test('changing only evaluate reruns only evaluation', async () => {
    await fakeBuild(recipe, cache, fakeImpls(new Map()));
    writeFileSync(recipe, fakeRecipe(STAGES).replace('seq_len: 8 }\noutputs', 'seq_len: 8, max_windows: 3 }\noutputs'));
    const { events } = await fakeBuild(recipe, cache, fakeImpls(new Map()));
    expect(ranIds(events).sort()).toEqual(['evaluate/fp', 'evaluate/quantized', 'report', 'tokenize/evaluation']);
  });

  test('a corrupted cache entry is detected and rebuilt, never used', async () => {
    await fakeBuild(recipe, cache, fakeImpls(new Map()));
    // same size, different bytes: caught by the digest check when a running step reads it
    const entry = join(cache, 'embed', readdirSync(join(cache, 'embed'))[0]!);
    const file = join(entry, 'out.txt');
    const text = readFileSync(file, 'utf8');
    writeFileSync(file, text.replace(/.$/, text.endsWith('x') ? 'y' : 'x'));
    // and a truncated entry: caught by the cheap check at lookup
    const tok = join(cache, 'tokenize', readdirSync(join(cache, 'tokenize'))[0]!, 'out.txt');
    truncateSync(tok, 1);
    writeFileSync(recipe, fakeRecipe(STAGES.replace('scheme: W8A8', 'scheme: W4A16')));
    const { events } = await fakeBuild(recipe, cache, fakeImpls(new Map()));
    const ran = ranIds(events);
    expect(ran).toContain('embed/calibration');
    expect(events.some((e) => e.event === 'log' && e.level === 'warn' && /corrupt/.test(e.message))).toBe(true);
    expect(ran.filter((id) => id.startsWith('tokenize/')).length).toBeGreaterThan(0);
  });

  test('an output whose lock file is damaged is written again, lock file included', async () => {
    await fakeBuild(recipe, cache, fakeImpls(new Map()));
    const lock = join(dir, 'out/model/quantforge.lock.json');
    const whole = readFileSync(lock, 'utf8');
    truncateSync(lock, 20);
    const { events } = await fakeBuild(recipe, cache, fakeImpls(new Map()));
    expect(ranIds(events)).toEqual([]);
    expect(readFileSync(lock, 'utf8')).toBe(whole);
  });

  test('a full disk while a step writes fails the step as disk-full, naming the store, with no partial entry', async () => {
    const onRun = (id: string): void => {
      if (id === 'embed/calibration') throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    };
    const { summary, events } = await fakeBuild(recipe, cache, fakeImpls(new Map(), { onRun }));
    expect(summary.failed).toBe(1);
    expect(events.find((e) => e.event === 'step-failed')).toMatchObject({ id: 'embed/calibration', reason: 'disk-full', message: `no space left on ${cache}` });
    expect(readdirSync(join(cache, 'tmp'))).toEqual([]);
    expect(existsSync(join(cache, 'embed'))).toBe(false);
  });

  test('a sweep of 3 values over a later stage runs the earlier stage once', async () => {
    const calls = new Map<string, number>();
    const { summary } = await fakeBuild(recipe, cache, fakeImpls(calls), ['stages[1].dampening_frac=0.01,0.05,0.1']);
    expect(summary.steps['smoothquant']).toEqual({ ran: LAYERS, cached: 0 });
    expect(summary.steps['capture']).toEqual({ ran: LAYERS, cached: 0 });
    expect(summary.steps['gptq']!.ran).toBe(3 * LAYERS);
    expect(summary.steps['evaluate']!.ran).toBe(1 + 3);
    expect((summary.metrics as { variants: unknown[] }).variants).toHaveLength(3);
  });
});

function runChild(delayMs: number, onLine?: (line: Record<string, unknown>, kill: () => void) => void): Promise<{ code: number | null; lines: Record<string, unknown>[] }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures/fake-build-cli.ts'), recipe, cache, String(delayMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: Record<string, unknown>[] = [];
  let buf = '';
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = JSON.parse(buf.slice(0, i)) as Record<string, unknown>;
      buf = buf.slice(i + 1);
      lines.push(line);
      onLine?.(line, () => child.kill('SIGKILL'));
    }
  });
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, lines })));
}

describe('interrupted and concurrent builds', () => {
  test('a run killed during layer k resumes with only layers ≥ k and what follows', async () => {
    const K = 7;
    const killed = await runChild(50, (line, kill) => {
      if (line['event'] === 'running' && line['id'] === `stage2.gptq/layer.${K}`) kill();
    });
    expect(killed.code).toBeNull();
    const { events } = await fakeBuild(recipe, cache, fakeImpls(new Map()));
    const ran = ranIds(events);
    const gptqLayers = ran.filter((id) => id.startsWith('stage2.gptq/layer.')).map((id) => Number(id.split('.').pop()));
    expect(Math.min(...gptqLayers)).toBe(K);
    expect(gptqLayers).toHaveLength(LAYERS - K);
    expect(count(ran, 'stage1.')).toBe(0);
  });

  test('two concurrent runs on one cache both succeed with identical outputs', async () => {
    const [a, b] = await Promise.all([runChild(5), runChild(5)]);
    expect(a.code).toBe(0);
    expect(b.code).toBe(0);
    const summary = (r: typeof a): Record<string, unknown> => r.lines.find((l) => l['event'] === 'summary')!;
    expect(summary(a)['failed']).toBe(0);
    expect(summary(b)['failed']).toBe(0);
    expect(summary(a)['metrics']).toEqual(summary(b)['metrics']);
    const total = (s: Record<string, unknown>): number => (s['ran'] as number) + (s['cached'] as number);
    expect(total(summary(a))).toBe(total(summary(b)));
    expect(readFileSync(join(dir, 'out/model/out.txt'), 'utf8').length).toBeGreaterThan(0);
  });
});
