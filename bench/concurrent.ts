// Concurrent runs at scale: R rounds (10 by default) of three `quantforge run`s of one recipe (GPTQ W4A16 on
// ../shared/models/stories260K) on one empty store and the same output paths, each round with `cache gc
// --max-size 0` looping beside them and a reader parsing the outputs (test/reliability/concurrent.ts has the
// checks; CI runs one round).
// Usage: npx tsx bench/concurrent.ts [--rounds 10] [--runs 3]

import { rm } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { concurrentRuns } from '../test/reliability/concurrent.js';
import { makeWorkspace, outputFingerprints, runBuild } from '../test/reliability/workspace.js';
import { table } from './util.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '10' }, runs: { type: 'string', default: '3' } } });
const rounds = Number(values.rounds);
const count = Number(values.runs);
if (!Number.isInteger(rounds) || rounds < 1 || !Number.isInteger(count) || count < 2) {
  console.error('usage: npx tsx bench/concurrent.ts [--rounds N] [--runs N]');
  process.exit(2);
}

const ws = await makeWorkspace(undefined, 'qf-concurrent-');
const undisturbed = await runBuild(ws);
if (undisturbed.code !== 0) throw new Error(`the undisturbed run failed: ${undisturbed.stderr}`);
const ref = await outputFingerprints(ws);
const steps = undisturbed.events.filter((e) => e.event === 'step-done').map((e) => e.id!);
console.log(`concurrent: ${rounds} rounds of ${count} runs at once (${steps.length} steps each), gc --max-size 0 looping beside them\n`);

const rows: string[][] = [];
let failed = false;
const totals = { runs: 0, ok: 0, ran: 0, twice: 0, identical: 0, reads: 0, absent: 0, broken: 0, gcs: 0, beside: 0, pinnedRemoved: 0 };
const t0 = performance.now();
for (let round = 1; round <= rounds; round++) {
  const t = performance.now();
  const r = await concurrentRuns(ws, ref, steps, count);
  const ok = r.runs.every((x) => x.code === 0);
  const problems = [
    ...r.stderr,
    ...Object.entries(r.repeated).map(([id, n]) => `${id} ran ${n} times`),
    ...r.missing.map((id) => `${id} not done by every run`),
    ...r.outputDiffs,
    ...r.reads.broken,
    ...r.gc.failures,
    ...r.gc.removedPinned.map((e) => `gc removed pinned ${e}`),
  ];
  failed ||= problems.length > 0;
  totals.runs += r.runs.length;
  totals.ok += r.runs.filter((x) => x.code === 0).length;
  totals.ran += r.runs.reduce((s, x) => s + x.ran, 0);
  totals.twice += Object.keys(r.repeated).length;
  totals.identical += r.outputDiffs.length === 0 && ok ? 1 : 0;
  totals.reads += r.reads.ok;
  totals.absent += r.reads.absent;
  totals.broken += r.reads.broken.length;
  totals.gcs += r.gc.runs;
  totals.beside += r.gc.whileBuilding;
  totals.pinnedRemoved += r.gc.removedPinned.length;
  for (const p of problems) console.log(`  round ${round} PROBLEM: ${p}`);
  rows.push([
    String(round),
    `${r.runs.filter((x) => x.code === 0).length}/${r.runs.length}`,
    String(r.runs.reduce((s, x) => s + x.ran, 0)),
    String(Object.keys(r.repeated).length),
    r.outputDiffs.length === 0 && ok ? 'yes' : 'NO',
    `${r.reads.ok} / ${r.reads.absent} / ${r.reads.broken.length}`,
    `${r.gc.runs} (${r.gc.whileBuilding})`,
    `${r.gc.removedPlanted} / ${r.gc.removedPinned.length}`,
    ((performance.now() - t) / 1000).toFixed(0),
  ]);
}
await rm(ws.dir, { recursive: true, force: true });
console.log(
  table(
    ['round', 'runs ok', 'steps ran (all runs)', 'steps ran twice', 'outputs identical', 'reads ok / absent / broken', 'gcs (beside pins)', 'unpinned / pinned removed', 'seconds'],
    rows,
  ),
);
const T = totals;
console.log(
  `\n${rounds} rounds: ${T.ok}/${T.runs} runs ok; ${T.ran} step computations for ${rounds * steps.length} steps (${T.twice} computed twice); ` +
    `outputs identical in ${T.identical}/${rounds} rounds; reads ${T.reads} ok, ${T.absent} absent, ${T.broken} broken; ` +
    `${T.gcs} gcs (${T.beside} beside pinned runs), ${T.pinnedRemoved} pinned entries removed; ${((performance.now() - t0) / 1000).toFixed(0)} s`,
);
console.log(`\nreproduce: npx tsx bench/concurrent.ts --rounds ${rounds} --runs ${count}`);
process.exit(failed ? 1 : 0);
