// Three concurrent `quantforge run`s of one recipe on one store and the same output paths, with `cache gc
// --max-size 0` running over and over beside them and a reader parsing the outputs (concurrent.ts).

import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { describeShared } from '../e2e/shared.js';
import { concurrentRuns } from './concurrent.js';
import { makeWorkspace, outputFingerprints, runBuild, runCli, type Workspace } from './workspace.js';

describeShared('concurrent runs', () => {
  let ws: Workspace;
  let ref: Awaited<ReturnType<typeof outputFingerprints>>;
  let steps: string[];
  let quantized: number;
  beforeAll(async () => {
    ws = await makeWorkspace(undefined, 'qf-concurrent-');
    const undisturbed = await runBuild(ws);
    expect(undisturbed.code).toBe(0);
    ref = await outputFingerprints(ws);
    steps = undisturbed.events.filter((e) => e.event === 'step-done').map((e) => e.id!);
    quantized = (undisturbed.events.find((e) => e.event === 'summary')!['metrics'] as { perplexity: { quantized: number } }).perplexity.quantized;
  });
  afterAll(() => rm(ws.dir, { recursive: true, force: true }));

  test('three runs and a looping gc --max-size 0: all succeed, each step runs once, outputs whole and identical', async () => {
    const report = await concurrentRuns(ws, ref, steps);
    console.log(JSON.stringify({ runs: report.runs, reads: { ...report.reads, broken: report.reads.broken.length }, gc: report.gc }));
    expect(report.stderr).toEqual([]);
    expect(report.runs.map((r) => r.code)).toEqual([0, 0, 0]);
    expect(report.repeated).toEqual({});
    expect(report.missing).toEqual([]);
    expect(report.runs.reduce((s, r) => s + r.ran, 0)).toBe(steps.length);
    expect(report.outputDiffs).toEqual([]);
    expect(report.reads.broken).toEqual([]);
    expect(report.reads.ok).toBeGreaterThan(0);
    expect(report.gc.failures).toEqual([]);
    expect(report.gc.removedPinned).toEqual([]);
    // the gcs ran beside the builds (pinned entries were there) and deleted what nobody pinned
    expect(report.gc.whileBuilding).toBeGreaterThan(0);
    expect(report.gc.removedPlanted).toBe(4);
    // the checkpoint the three wrote loads, with the build's own quantized perplexity
    const ev = await runCli(ws, ['eval', '--model', 'out/ct', '--dataset', 'eval.txt', '--seq-len', '128', '--max-windows', '4', '--json', '--device', 'cpu']);
    expect(ev.code).toBe(0);
    expect((ev.events[0] as { perplexity?: number }).perplexity).toBeCloseTo(quantized, 6);
  });
});
