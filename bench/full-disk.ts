// A full disk at many levels: the store and the outputs on a tmpfs (needs root), build A done, then build B
// (another dampening_frac) with free space at each level, from none to more than B needs, plus one level
// aimed at the outputs (B's entries fit, its first output does not). Every run that runs out must exit 1 with
// "no space left on <path>", leave no partial entry and leave each output directory A's (intact and loadable)
// or a complete one of B's (byte-identical to B's once B completes)
// (test/reliability/full-disk.ts has the checks; CI runs three levels).
// Usage: npx tsx bench/full-disk.ts [--levels 12]

import { parseArgs } from 'node:util';
import { fullDiskCampaign, mountTmpfs } from '../test/reliability/full-disk.js';
import { table } from './util.js';

const { values } = parseArgs({ options: { levels: { type: 'string', default: '12' } } });
const n = Number(values.levels);
if (!Number.isInteger(n) || n < 2) {
  console.error('usage: npx tsx bench/full-disk.ts [--levels N]');
  process.exit(2);
}
const mount = mountTmpfs(16 << 20);
if ('reason' in mount) {
  console.error(`cannot run: ${mount.reason}`);
  process.exit(2);
}
const levels = [...Array.from({ length: n }, (_, i) => (1.1 * i) / (n - 1)), 'outputs' as const];
console.log(`full disk: build B on a 16 MiB tmpfs at ${levels.length} levels of free space\n`);
try {
  const report = await fullDiskCampaign(mount.dir, levels);
  const rows = report.runs.map((r) => [
    `${(100 * r.level).toFixed(0)} %`,
    `${(r.freeBytes / 1024).toFixed(0)} KiB`,
    String(r.code),
    r.where || '(completed)',
    r.message.replace(mount.dir, '<tmpfs>').replace(/^quantforge run: /, '').replace(/[0-9]+-[0-9a-f]{8}/, '…'),
    r.evalPerplexity === undefined ? '' : r.evalPerplexity.toFixed(4),
    Object.values(r.held).join(' / '),
  ]);
  console.log(table(['free / need', 'free', 'exit', 'ran out at', 'message', 'eval of out/ct after', 'ct / onnx / report hold'], rows));
  console.log("\n'A': the previous build's directory, untouched; 'B': a complete new one, byte-identical to B's once B completes");
  const failedRuns = report.runs.filter((r) => r.code !== 0).length;
  console.log(`\n${report.runs.length} runs, ${failedRuns} ran out of space; problems: ${report.problems.length}; with room again: exit ${report.final.code}, ${report.final.damaged} damaged, ${report.final.leftovers.length} left after gc`);
  for (const p of report.problems) console.log(`PROBLEM: ${p}`);
  console.log(`\nreproduce: sudo npx tsx bench/full-disk.ts --levels ${n}`);
  process.exitCode = report.problems.length > 0 ? 1 : 0;
} finally {
  mount.unmount();
}
