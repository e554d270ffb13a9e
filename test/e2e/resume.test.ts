// Kill the real CLI during layer k of a GPTQ run (SIGKILL, no cleanup); the rerun computes only layers ≥ k.

import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { REPO } from './shared.js';

const CLI = join(REPO, 'bin/quantforge.js');

function run(cwd: string, killAt?: string): Promise<{ code: number | null; lines: Record<string, unknown>[] }> {
  const child = spawn(process.execPath, [CLI, 'run', 'recipe.yaml', '--json', '--device', 'cpu'], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  let buf = '';
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = JSON.parse(buf.slice(0, i)) as Record<string, unknown>;
      buf = buf.slice(i + 1);
      lines.push(line);
      if (killAt && line['event'] === 'step-start' && line['id'] === killAt) child.kill('SIGKILL');
    }
  });
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, lines })));
}

describe('resuming an interrupted run', () => {
  test('a GPTQ run killed during layer 2 resumes at layer 2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qf-resume-'));
    writeFileSync(
      join(dir, 'recipe.yaml'),
      `quantforge: 1
model: { example: tiny, seed: 0 }
calibration: { dataset: "model:calib.txt", samples: 16, seq_len: 128 }
stages:
  - { kind: gptq, scheme: W4A16, ignore: [lm_head] }
`,
    );
    const killed = await run(dir, 'stage1.gptq/layer.2');
    expect(killed.code).toBeNull();
    const done = killed.lines.filter((l) => l['event'] === 'step-done').map((l) => l['id']);
    expect(done).toEqual(expect.arrayContaining(['stage1.gptq/layer.0', 'stage1.gptq/layer.1']));
    const rerun = await run(dir);
    expect(rerun.code).toBe(0);
    const summary = rerun.lines.find((l) => l['event'] === 'summary') as { steps: Record<string, { ran: number; cached: number }> };
    expect(summary.steps['gptq']).toEqual({ ran: 2, cached: 2 });
    const ran = rerun.lines.filter((l) => l['event'] === 'step-done' && l['result'] === 'ran').map((l) => l['id']);
    expect(ran).toEqual(expect.arrayContaining(['stage1.gptq/layer.2', 'stage1.gptq/layer.3']));
    expect(ran).not.toContain('stage1.gptq/layer.1');
  });
});
