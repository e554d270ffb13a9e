import { PassThrough } from 'node:stream';
import { describe, expect, test } from 'vitest';
import type { PlannedStep, RunEvent } from '../../src/exec/events.js';
import { createReporter } from '../../src/exec/reporters/index.js';
import { JsonReporter } from '../../src/exec/reporters/json.js';
import { ListrReporter } from '../../src/exec/reporters/listr.js';
import { formatMs, PlainReporter } from '../../src/exec/reporters/plain.js';

/** a stream that remembers everything written to it */
function sink(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.setEncoding('utf8').on('data', (c: string) => (text += c));
  return { stream, text: () => text };
}

const GPTQ = { kind: 'gptq', group: 'stage 1: gptq' } as const;

/** a small run: two calibration steps cached, two GPTQ layers run, the evaluation fails */
function scriptedRun(): { at: number; e: RunEvent }[] {
  return [
    {
      at: 0,
      e: {
        event: 'plan',
        steps: [
          { id: 'tokenize/calibration', kind: 'tokenize', group: 'calibration', state: 'fresh' },
          { id: 'embed/calibration', kind: 'embed', group: 'calibration', state: 'fresh' },
          { id: 'stage1.gptq/layer.0', ...GPTQ, state: 'run', reason: 'param changed: dampening_frac 0.01 → 0.1' },
          { id: 'stage1.gptq/layer.1', ...GPTQ, state: 'run', reason: 'input changed: stage1.gptq/layer.0' },
          { id: 'evaluate/quant', kind: 'evaluate', group: 'evaluate', state: 'run', reason: 'new' },
        ],
      },
    },
    { at: 0, e: { event: 'step-done', id: 'tokenize/calibration', kind: 'tokenize', group: 'calibration', result: 'cached', ms: 0 } },
    { at: 0, e: { event: 'step-done', id: 'embed/calibration', kind: 'embed', group: 'calibration', result: 'cached', ms: 0 } },
    { at: 0, e: { event: 'step-start', id: 'stage1.gptq/layer.0', ...GPTQ } },
    // 10% after 0.5 s: neither a quarter mark nor 2 s since the start
    { at: 500, e: { event: 'step-progress', id: 'stage1.gptq/layer.0', done: 1, total: 10 } },
    // 20% after 2.5 s: the 2 s interval has passed
    { at: 2500, e: { event: 'step-progress', id: 'stage1.gptq/layer.0', done: 2, total: 10, message: 'self_attn.o_proj' } },
    // 30%: crosses the 25% mark
    { at: 2600, e: { event: 'step-progress', id: 'stage1.gptq/layer.0', done: 3, total: 10 } },
    // 40%: nothing new
    { at: 2700, e: { event: 'step-progress', id: 'stage1.gptq/layer.0', done: 4, total: 10 } },
    // 100%: the done line says it
    { at: 2800, e: { event: 'step-progress', id: 'stage1.gptq/layer.0', done: 10, total: 10 } },
    { at: 2800, e: { event: 'log', level: 'warn', id: 'stage1.gptq/layer.0', message: 'Hessian is singular; dampening raised to 0.1' } },
    { at: 2900, e: { event: 'step-done', id: 'stage1.gptq/layer.0', ...GPTQ, result: 'ran', ms: 2900, metrics: { loss: 0.0125 } } },
    { at: 2900, e: { event: 'step-start', id: 'stage1.gptq/layer.1', ...GPTQ } },
    { at: 3000, e: { event: 'step-done', id: 'stage1.gptq/layer.1', ...GPTQ, result: 'ran', ms: 100 } },
    { at: 3000, e: { event: 'log', level: 'info', message: 'using the cpu execution provider' } },
    { at: 3000, e: { event: 'step-start', id: 'evaluate/quant', kind: 'evaluate', group: 'evaluate' } },
    {
      at: 3100,
      e: {
        event: 'step-failed',
        id: 'evaluate/quant',
        kind: 'evaluate',
        group: 'evaluate',
        message: 'evaluation file ./data/eval.txt not found',
        location: { path: 'recipes/gptq-w4a16.yaml', line: 14, column: 5 },
        reason: 'file-not-found',
      },
    },
    { at: 3100, e: { event: 'output', format: 'compressed-tensors', path: './out/stories15M-w4a16' } },
    {
      at: 3200,
      e: {
        event: 'summary',
        ran: 2,
        cached: 2,
        failed: 1,
        steps: { gptq: { ran: 2, cached: 0 }, tokenize: { ran: 0, cached: 1 }, embed: { ran: 0, cached: 1 } },
        metrics: { perplexity: { fp: 12.5 } },
        outputs: [{ format: 'compressed-tensors', path: './out/stories15M-w4a16' }],
        ms: 3200,
      },
    },
  ];
}

describe('JsonReporter', () => {
  test('writes one parseable event per line and ends with the summary', async () => {
    const out = sink();
    const reporter = new JsonReporter(out.stream);
    const events = scriptedRun().map((s) => s.e);
    events.forEach((e) => reporter.onEvent(e));
    await reporter.close();
    const lines = out.text().trimEnd().split('\n');
    expect(lines.map((l) => JSON.parse(l) as RunEvent)).toEqual(events);
    expect((JSON.parse(lines.at(-1)!) as RunEvent).event).toBe('summary');
  });
});

describe('PlainReporter', () => {
  function renderPlain(color = false): string {
    const out = sink();
    let now = 0;
    const reporter = new PlainReporter({ stream: out.stream, color, now: () => now });
    for (const { at, e } of scriptedRun()) {
      now = at;
      reporter.onEvent(e);
    }
    return out.text();
  }

  test('renders one line per step event, throttled progress, warnings, outputs and a summary', () => {
    expect(renderPlain()).toMatchInlineSnapshot(`
      "plan: 5 steps, 3 to run, 2 fresh
        stage1.gptq/layer.0: param changed: dampening_frac 0.01 → 0.1
        stage1.gptq/layer.1: input changed: stage1.gptq/layer.0
      cached tokenize/calibration
      cached embed/calibration
      start  stage1.gptq/layer.0
             stage1.gptq/layer.0 20% (2/10) self_attn.o_proj
             stage1.gptq/layer.0 30% (3/10)
      warning: [stage1.gptq/layer.0] Hessian is singular; dampening raised to 0.1
      done   stage1.gptq/layer.0 in 2.9 s  {"loss":0.0125}
      start  stage1.gptq/layer.1
      done   stage1.gptq/layer.1 in 100 ms
      using the cpu execution provider
      start  evaluate/quant
      FAILED evaluate/quant (file-not-found): evaluation file ./data/eval.txt not found
             at recipes/gptq-w4a16.yaml:14:5
      output compressed-tensors → ./out/stories15M-w4a16
      5 steps: 2 ran, 2 cached, 1 failed in 3.2 s
      metrics: {"perplexity":{"fp":12.5}}
      "
    `);
  });

  test('writes no ANSI escapes unless colour is asked for', () => {
    expect(renderPlain()).not.toMatch(/\x1b\[/);
    expect(renderPlain(true)).toMatch(/\x1b\[31mFAILED\x1b\[39m/);
  });

  test('lists at most ten changed steps in the plan', () => {
    const out = sink();
    const steps: PlannedStep[] = Array.from({ length: 14 }, (_, i) => ({ id: `s/${i}`, kind: 'rtn', group: 'g', state: 'run', reason: `param changed: i ${i}` }));
    new PlainReporter({ stream: out.stream }).onEvent({ event: 'plan', steps });
    const lines = out.text().trimEnd().split('\n');
    expect(lines[0]).toBe('plan: 14 steps, 14 to run, 0 fresh');
    expect(lines.slice(1, -1)).toHaveLength(10);
    expect(lines.at(-1)).toBe('  ... and 4 more changed steps');
  });

  test.each([
    [850.4, '850 ms'],
    [4200, '4.2 s'],
    [187_000, '3 m 07 s'],
    [3_900_000, '1 h 05 m'],
  ])('formats %d ms as %s', (ms, text) => {
    expect(formatMs(ms)).toBe(text);
  });
});

describe('ListrReporter', () => {
  async function drive(renderer: 'simple' | 'silent', events: RunEvent[]): Promise<string> {
    const out = sink();
    const reporter = new ListrReporter({ stream: out.stream, renderer });
    for (const e of events) {
      reporter.onEvent(e);
      // let listr2 start its tasks and render, as it does between the events of a real run
      await new Promise((r) => setImmediate(r));
    }
    await reporter.close();
    return out.text();
  }

  test('drives a run through the simple renderer: groups, failures and the summary', async () => {
    const text = await drive('simple', scriptedRun().map((s) => s.e));
    expect(text).toContain('calibration (2 cached)');
    expect(text).toContain('stage 1: gptq · 2 ran, 0 cached');
    expect(text).toContain('evaluate/quant (file-not-found): evaluation file ./data/eval.txt not found at recipes/gptq-w4a16.yaml:14:5');
    expect(text).toMatch(/stage1\.gptq\/layer\.0 30% \(3\/10\) · ETA /);
    expect(text.trimEnd().split('\n').slice(-4)).toEqual([
      'warning: [stage1.gptq/layer.0] Hessian is singular; dampening raised to 0.1',
      'output compressed-tensors → ./out/stories15M-w4a16',
      '5 steps: 2 ran, 2 cached, 1 failed in 3.2 s',
      'metrics: {"perplexity":{"fp":12.5}}',
    ]);
  });

  test('finishes when the run stops early, leaving unfinished groups skipped', async () => {
    const events = scriptedRun().map((s) => s.e).slice(0, 4);
    const text = await drive('simple', events);
    expect(text).toContain('stage 1: gptq (not run)');
  });

  test('works with the silent renderer and prints only the closing lines', async () => {
    const text = await drive('silent', scriptedRun().map((s) => s.e));
    expect(text.trimEnd().split('\n')).toHaveLength(4);
  });

  test('falls back to plain lines for events that come before any plan', async () => {
    const text = await drive('simple', [{ event: 'log', level: 'warn', message: 'no plan yet' }, scriptedRun().at(-1)!.e]);
    expect(text).toBe('warning: no plan yet\n5 steps: 2 ran, 2 cached, 1 failed in 3.2 s\nmetrics: {"perplexity":{"fp":12.5}}\n');
  });
});

describe('createReporter', () => {
  const stream = new PassThrough();
  test.each([
    [{ json: true, tty: true }, JsonReporter],
    [{ tty: true, env: {} }, ListrReporter],
    [{ tty: true, env: { CI: 'true' } }, PlainReporter],
    [{ tty: false, env: {} }, PlainReporter],
    [{ env: {} }, PlainReporter],
  ])('picks for %o', async (choice, expected) => {
    expect(await createReporter({ stream, ...choice })).toBeInstanceOf(expected);
  });
});
