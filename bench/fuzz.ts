// The fuzz targets of test/fuzz at scale: N cases per target (10,000 by default) with a fixed seed, and the
// count of each outcome ('ok' or the reason of the named error a case ended in) and of the exit code
// `quantforge` gives it (0 ok, 2 a malformed input or recipe, 1 anything else). A case that ends any other way
// (an unnamed error, a stack trace, a hang past 20 s) stops its target with fast-check's report: the seed, the
// path and the shrunk counterexample, to be turned into a regression test; the tallies until then are printed.
// Usage: npx tsx bench/fuzz.ts [--runs 10000] [--seed 20250015] [--target NAME]...

import { parseArgs } from 'node:util';
import { formatOutcomes, FUZZ_SEED, FuzzFailure, runFuzz, type FuzzReport, type FuzzTarget } from '../test/fuzz/harness.js';
import { compressedTensorsTarget, onnxTarget } from '../test/fuzz/targets/exports.js';
import { checkpointIndexTarget, configJsonTarget, tokenizerJsonTarget } from '../test/fuzz/targets/model-dir.js';
import { recipesTarget } from '../test/fuzz/targets/recipes.js';
import { safetensorsHeaderTarget } from '../test/fuzz/targets/safetensors-header.js';
import { table } from './util.js';

const TARGETS = [safetensorsHeaderTarget, configJsonTarget, tokenizerJsonTarget, checkpointIndexTarget, recipesTarget, compressedTensorsTarget, onnxTarget] as FuzzTarget<unknown, unknown>[];

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '10000' },
    seed: { type: 'string', default: String(FUZZ_SEED) },
    target: { type: 'string', multiple: true },
  },
});
const runs = Number(values.runs);
const seed = Number(values.seed);
const chosen = values.target ? TARGETS.filter((t) => values.target!.includes(t.name)) : TARGETS;
if (!Number.isInteger(runs) || runs < 1 || !Number.isInteger(seed) || chosen.length === 0) {
  console.error(`usage: npx tsx bench/fuzz.ts [--runs N] [--seed N] [--target ${TARGETS.map((t) => t.name).join('|')}]...`);
  process.exit(2);
}

console.log(`fuzz: ${runs} cases per target, seed ${seed}\n`);
const reports: FuzzReport[] = [];
let failed = false;
for (const target of chosen) {
  process.stdout.write(`${target.name}: ${target.description}\n`);
  try {
    const report = await runFuzz(target, { seed, numRuns: runs });
    reports.push(report);
    console.log(`  ${report.runs} cases in ${report.seconds.toFixed(1)} s: ${formatOutcomes(report.outcomes)}\n`);
  } catch (e) {
    failed = true;
    const partial = e instanceof FuzzFailure ? e.report : undefined;
    if (partial) console.log(`  ${partial.runs} cases (shrinking included) in ${partial.seconds.toFixed(1)} s before the failure: ${formatOutcomes(partial.outcomes)}`);
    console.log(`  FAILED: ${e instanceof Error ? e.message : String(e)}\n`);
  }
}

const exit = (r: FuzzReport, code: number): string => String(r.exits.get(code) ?? 0);

const rows = reports.map((r) => {
  const ok = r.outcomes.get('ok') ?? 0;
  const named = r.runs - ok;
  // a target's report exists only when fast-check found no case that ended otherwise (unnamed, crash, hang)
  return [r.target, String(r.runs), String(ok), String(named), String(r.outcomes.size - (r.outcomes.has('ok') ? 1 : 0)), exit(r, 0), exit(r, 2), exit(r, 1), '0', r.seconds.toFixed(1)];
});
const head = ['target', 'cases', 'ok', 'named errors', 'distinct reasons', 'exit 0', 'exit 2', 'exit 1', 'unnamed / crash / hang', 'seconds'];
console.log(table(head, rows));
if (failed) console.log(`\n${chosen.length - reports.length} target(s) FAILED (above): their cases are not in the table`);
console.log(`\nreproduce: npx tsx bench/fuzz.ts --runs ${runs} --seed ${seed}${(values.target ?? []).map((t) => ` --target ${t}`).join('')}`);
process.exit(failed ? 1 : 0);
