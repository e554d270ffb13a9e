// Random kills at scale: `quantforge run` (GPTQ W4A16 on ../shared/models/stories260K) SIGKILLed at N seeded
// moments (20 by default), rerun after each, then checked: the outputs are byte-identical to an undisturbed
// run's, `cache verify` finds nothing damaged, and nothing an interrupted write left survives `cache gc`
// (test/reliability/kills.ts has the moments and the checks; CI runs 5 of them).
// Usage: npx tsx bench/kills.ts [--kills 20] [--seed 20250015]

import { parseArgs } from 'node:util';
import { killCampaign, MOMENTS } from '../test/reliability/kills.js';
import { table } from './util.js';

const { values } = parseArgs({ options: { kills: { type: 'string', default: '20' }, seed: { type: 'string', default: '20250015' } } });
const kills = Number(values.kills);
const seed = Number(values.seed);
if (!Number.isInteger(kills) || kills < 1 || !Number.isInteger(seed)) {
  console.error('usage: npx tsx bench/kills.ts [--kills N] [--seed N]');
  process.exit(2);
}

console.log(`kills: ${kills} SIGKILLs of quantforge run (GPTQ W4A16, stories260K), seed ${seed}\n`);
const t0 = performance.now();
const report = await killCampaign({ kills, seed, log: (line) => console.log(`  ${line}`) });
const seconds = (performance.now() - t0) / 1000;

const rows = MOMENTS.map((kind) => {
  const of = report.kills.filter((k) => k.kind === kind);
  return [kind, String(of.length), [...new Set(of.map((k) => k.lastStep ?? 'before any step'))].join(', ')];
});
console.log(`\n${table(['moment', 'kills', 'last step started before the kill'], rows)}\n`);
console.log(
  table(
    ['kills survived', 'runs (missed moments)', 'outputs identical', 'entries verified', 'damaged', 'left after gc', 'problems', 'seconds'],
    [[String(report.kills.length), `${report.runs} (${report.missed})`, report.final.identical ? 'yes' : 'NO', String(report.final.verified), String(report.final.damaged), String(report.final.leftovers.length), String(report.problems.length), seconds.toFixed(0)]],
  ),
);
for (const p of report.problems) console.log(`PROBLEM: ${p}`);
console.log(`\nreproduce: npx tsx bench/kills.ts --kills ${kills} --seed ${seed}`);
process.exit(report.problems.length > 0 ? 1 : 0);
