// Random kills in CI: five SIGKILLs of `quantforge run` (GPTQ W4A16 on stories260K), one per kind of moment
// (a seeded time, tokenize/embed, mid-step, inside a commit, while outputs are written), each followed by a
// rerun. bench/kills.ts runs the same campaign with 20 kills or more.

import { expect, test } from 'vitest';
import { describeShared } from '../e2e/shared.js';
import { killCampaign, MOMENTS } from './kills.js';

export const KILL_SEED = 20_250_015;

describeShared('random kills', () => {
  test('five SIGKILLs at seeded moments lose nothing: outputs as undisturbed, the store sound, no leftovers after gc', async () => {
    const lines: string[] = [];
    const report = await killCampaign({ kills: 5, seed: KILL_SEED, log: (l) => lines.push(l) });
    console.log(lines.join('\n'));
    expect(report.problems).toEqual([]);
    expect(new Set(report.kills.map((k) => k.kind))).toEqual(new Set(MOMENTS));
    expect(report.final).toMatchObject({ identical: true, damaged: 0, leftovers: [] });
    expect(report.final.verified).toBeGreaterThan(0);
  });
});
