// The kernel ceiling of batch-1 decoding on the 100m example model: each Linear shape the int4 export runs per
// token (q/k/v stacked, o, gate/up stacked, down; the fp32 lm_head), at M = 1, as fp32 MatMul against
// MatMulNBits (block sizes and accuracy levels) and the other int weight paths onnxruntime has (blocked int4
// DequantizeLinear + MatMul, int8 DynamicQuantizeLinear + MatMulInteger, DynamicQuantizeMatMul), at 1 and 2
// intra-op threads, all in one process, rounds interleaved. Each graph chains one op per layer with distinct
// weights (14 copies, as the model has), so the weights stream from memory or L3 as they do when decoding; a
// Slice or Pad fits each output to the next op's input. "all Linears" is one token's Linear work in model
// order (qkv → o → gate/up → down per layer, then the lm_head in fp32 as every export writes it).
// Rounds during which other processes used more than a tenth of the machine are left out (bench/util.ts foreignShare).
// Usage: npx tsx bench/decode-kernels.ts [--runs 7] [--budget 300 (s per graph)] [--threads 1,2] [--only all]

import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { Runtime } from '../src/ort/session.js';
import { seededRandom } from '../src/random.js';
import { chain, fp32, L, PATHS, SHAPES, TOKEN, type Shape } from './decode-linears.js';
import { tensor } from '../src/tensor.js';
import { foreignShare, median, table } from './util.js';

const { values } = parseArgs({
  options: { runs: { type: 'string', default: '7' }, budget: { type: 'string', default: '300' }, threads: { type: 'string', default: '1,2' }, only: { type: 'string' } },
});
/** quiet rounds wanted per path; seconds per graph to wait for them; the most of the machine others may use in one */
const RUNS = Number(values.runs);
const BUDGET_S = Number(values.budget);
const QUIET = 0.1;
const ROUND_MS = 150;
const THREADS = values.threads.split(',').map(Number);

const rand = seededRandom(29);

interface Row {
  graph: string;
  path: string;
  threads: number;
  weightBytes: number;
  calls: number;
  /** per round: wall ms per run, process CPU ms per run, other processes' share of the machine */
  rounds: { ms: number; cpuMs: number; foreign: number }[];
}

/** the rounds to report: the quiet ones (other processes used < QUIET of the machine), or all when none was */
function quiet(r: Row): { ms: number; cpuMs: number; n: string } {
  const q = r.rounds.filter((x) => x.foreign < QUIET);
  const use = q.length > 0 ? q : r.rounds;
  return { ms: median(use.map((x) => x.ms)), cpuMs: median(use.map((x) => x.cpuMs)), n: `${q.length}/${r.rounds.length}` };
}

async function measure(graphName: string, steps: Shape[], fp32Last: boolean): Promise<Row[]> {
  const rows: Row[] = [];
  const runners: { row: Row; inner: number; run: () => Promise<unknown>; close: () => Promise<void> }[] = [];
  for (const threads of THREADS) {
    for (const path of PATHS) {
      const { graph, K0, weightBytes } = chain(path, steps, fp32Last);
      const rt = new Runtime({ device: 'cpu', threads });
      const kernel = await rt.kernel(`${graphName}:${path.name}`, () => graph);
      const x = tensor('float32', [1, K0], Float32Array.from({ length: K0 }, () => 2 * rand() - 1));
      const row: Row = { graph: graphName, path: path.name, threads, weightBytes, calls: steps.length, rounds: [] };
      for (let i = 0; i < 2; i++) await kernel.run({ x });
      const t0 = performance.now();
      await kernel.run({ x });
      // rounds of ≥ ROUND_MS, so /proc/stat's 10 ms jiffies can tell whether another process ran meanwhile
      const inner = Math.max(3, Math.ceil(ROUND_MS / Math.max(0.01, performance.now() - t0)));
      runners.push({ row, inner, run: () => kernel.run({ x }), close: () => rt.close() });
      rows.push(row);
    }
  }
  const deadline = performance.now() + BUDGET_S * 1000;
  const quietRounds = (r: Row): number => r.rounds.filter((x) => x.foreign < QUIET).length;
  while (runners.some((r) => quietRounds(r.row) < RUNS || r.row.rounds.length < RUNS) && performance.now() < deadline) {
    for (const { row, inner, run } of runners) {
      const c0 = process.cpuUsage();
      const { ms, foreign } = await foreignShare(async () => {
        for (let i = 0; i < inner; i++) await run();
      });
      const c = process.cpuUsage(c0);
      row.rounds.push({ ms: ms / inner, cpuMs: (c.user + c.system) / 1000 / inner, foreign });
    }
  }
  for (const r of runners) await r.close();
  return rows;
}

const GRAPHS: [string, Shape[], boolean][] = [
  ['all Linears of a token', TOKEN, true],
  ...SHAPES.map((s): [string, Shape[], boolean] => [`${s.name} ${s.K}×${s.N}`, Array.from({ length: L }, () => s), false]),
];
const load0 = loadavg()[0]!;
const out: string[][] = [];
for (const [name, steps, fp32Last] of GRAPHS) {
  if (values.only && !name.startsWith(values.only)) continue;
  const rows = await measure(name, steps, fp32Last);
  for (const r of rows) {
    const q = quiet(r);
    const fp = quiet(rows.find((x) => x.threads === r.threads && x.path === fp32.name)!);
    const one = quiet(rows.find((x) => x.threads === 1 && x.path === r.path) ?? r);
    const cpu = r.threads === 1 ? `${(1000 * q.cpuMs).toFixed(0)}` : '—';
    const vsFp = `${(fp.ms / q.ms).toFixed(2)}×${r.threads === 1 ? ` / ${(fp.cpuMs / q.cpuMs).toFixed(2)}×` : ''}`;
    out.push([name, r.path, String(r.threads), q.n, (1000 * q.ms).toFixed(0), cpu, (r.weightBytes / 1e6).toFixed(1), (r.weightBytes / 1e6 / q.ms).toFixed(1), vsFp, `${(one.ms / q.ms).toFixed(2)}×`]);
  }
  console.error(`done: ${name}`);
}
const head = ['graph (14 ops; all: 57)', 'path', 'threads', 'quiet rounds', 'µs per run', 'CPU µs (1 thread)', 'weight MB per run', 'GB/s', 'speed vs fp32 MatMul, same threads (wall / CPU)', 'vs 1 thread'];
console.log(table(head, out));
console.log(`\nmedians over the quiet rounds (other processes used < ${100 * QUIET}% of the machine; all rounds where none was quiet), each round ≥ ${ROUND_MS} ms of back-to-back runs, paths interleaved round by round; CPU time is the process's user + system per run at 1 thread; load average ${load0.toFixed(2)} at start, ${loadavg()[0]!.toFixed(2)} at end.`);
