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
import { exampleConfigJson } from '../src/model/example-model.js';
import { EXAMPLE_VOCAB_SIZE } from '../src/model/example-tokenizer.js';
import { Graph, type Value } from '../src/ort/graph.js';
import { Runtime } from '../src/ort/session.js';
import { seededRandom } from '../src/random.js';
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

const c = exampleConfigJson('100m', EXAMPLE_VOCAB_SIZE, 'f32') as Record<string, number>;
const [H, I, L, V] = [c['hidden_size']!, c['intermediate_size']!, c['num_hidden_layers']!, c['vocab_size']!];
const kvRows = 2 * c['num_key_value_heads']! * c['head_dim']!;
type Shape = { name: string; K: number; N: number };
const SHAPES: Shape[] = [
  { name: 'q/k/v stacked', K: H, N: H + kvRows },
  { name: 'o_proj', K: H, N: H },
  { name: 'gate/up stacked', K: H, N: 2 * I },
  { name: 'down_proj', K: I, N: H },
  { name: 'lm_head', K: H, N: V },
];

const rand = seededRandom(17);
const bytes = (n: number): Uint8Array => Uint8Array.from({ length: n }, () => Math.floor(rand() * 256));
let serial = 0;
function init(g: Graph, dtype: Parameters<Graph['initializer']>[0]['dtype'], dims: number[], raw: Uint8Array): Value {
  return g.initializer({ name: `w${serial++}`, dtype, dims, raw });
}
const f32 = (n: number, scale: number): Uint8Array => new Uint8Array(Float32Array.from({ length: n }, () => (2 * rand() - 1) * scale).buffer);
const filled = (n: number, v: number): Uint8Array => new Uint8Array(new Float32Array(n).fill(v).buffer);

/** one Linear path: the bytes of weight data it reads per call and the ops that compute x · W */
interface Path {
  name: string;
  weightBytes(K: number, N: number): number;
  emit(g: Graph, x: Value, K: number, N: number): Value;
}

const fp32: Path = {
  name: 'fp32 MatMul',
  weightBytes: (K, N) => 4 * K * N,
  emit: (g, x, K, N) => g.matmul(x, init(g, 'float32', [K, N], f32(K * N, Math.sqrt(3 / K)))),
};

function nbits(block: number, level: number): Path {
  return {
    name: `MatMulNBits int4 block ${block} accuracy_level ${level}`,
    weightBytes: (K, N) => N * Math.ceil(K / block) * (block / 2 + 4),
    emit: (g, x, K, N) => {
      const kb = Math.ceil(K / block);
      // codes uniform in [−8, 7] (zero point 8): scale so that the weight's spread is ~1/√K
      const w = init(g, 'uint8', [N, kb, block / 2], bytes(N * kb * (block / 2)));
      const s = init(g, 'float32', [N * kb], filled(N * kb, 1 / Math.sqrt(21.25 * K)));
      return g.op('MatMulNBits', [x, w, s], { K, N, bits: 4, block_size: block, accuracy_level: level }, { domain: 'com.microsoft' });
    },
  };
}

const dqInt4: Path = {
  name: 'DequantizeLinear int4 block 128 + MatMul',
  weightBytes: (K, N) => (K * N) / 2 + 4 * N * Math.ceil(K / 128),
  emit: (g, x, K, N) => {
    const w = init(g, 'int4', [K, N], bytes((K * N) / 2));
    const s = init(g, 'float32', [Math.ceil(K / 128), N], filled(Math.ceil(K / 128) * N, 1 / Math.sqrt(21.25 * K)));
    return g.matmul(x, g.op('DequantizeLinear', [w, s], { axis: 0, block_size: 128 }, { dtype: 'float32' }));
  },
};

const int8Weights = (g: Graph, K: number, N: number): { w: Value; s: Value } => ({
  w: init(g, 'int8', [K, N], bytes(K * N)),
  s: init(g, 'float32', [N], filled(N, 1 / Math.sqrt(5461 * K))),
});

const matMulInteger: Path = {
  name: 'int8 DynamicQuantizeLinear + MatMulInteger',
  weightBytes: (K, N) => K * N + 4 * N,
  emit: (g, x, K, N) => {
    const { w, s } = int8Weights(g, K, N);
    const [q, xs, zp] = g.opN('DynamicQuantizeLinear', [x], 3, {}, { dtype: 'uint8' });
    const acc = g.op('MatMulInteger', [q!, w, zp!], {}, { dtype: 'int32' });
    return g.mul(g.cast(acc, 'float32'), g.mul({ name: xs!.name, dtype: 'float32' }, s));
  },
};

const dynamicQuantizeMatMul: Path = {
  name: 'int8 DynamicQuantizeMatMul',
  weightBytes: (K, N) => K * N + 4 * N,
  emit: (g, x, K, N) => {
    const { w, s } = int8Weights(g, K, N);
    return g.op('DynamicQuantizeMatMul', [x, w, s], {}, { domain: 'com.microsoft', dtype: 'float32' });
  },
};

const PATHS: Path[] = [fp32, nbits(128, 0), nbits(128, 4), nbits(64, 4), nbits(32, 4), nbits(32, 0), dqInt4, matMulInteger, dynamicQuantizeMatMul];

/** y [1, N] → [1, K] for the next op: the first K columns, or zero padding */
function fit(g: Graph, y: Value, N: number, K: number): Value {
  if (N === K) return y;
  if (N > K) return g.op('Slice', [y, g.ints([0]), g.ints([K]), g.ints([1])]);
  return g.op('Pad', [y, g.ints([0, 0, 0, K - N])]);
}

/** a chain of the Linears `steps` (each [K, N] with its own weight); the lm_head, when last in `all`, stays fp32 */
function chain(path: Path, steps: Shape[], fp32Last: boolean): { graph: Graph; K0: number; weightBytes: number } {
  const g = new Graph('decode_kernels');
  const K0 = steps[0]!.K;
  let x = g.input('x', 'float32', [1, K0]);
  let weightBytes = 0;
  steps.forEach((s, i) => {
    const p = fp32Last && i === steps.length - 1 ? fp32 : path;
    x = p.emit(g, x, s.K, s.N);
    weightBytes += p.weightBytes(s.K, s.N);
    const next = steps[i + 1];
    if (next) x = fit(g, x, s.N, next.K);
  });
  g.output(x, 'y');
  return { graph: g, K0, weightBytes };
}

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

const perLayer = SHAPES.filter((s) => s.name !== 'lm_head');
const GRAPHS: [string, Shape[], boolean][] = [
  ['all Linears of a token', [...Array.from({ length: L }, () => perLayer).flat(), SHAPES[4]!], true],
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
