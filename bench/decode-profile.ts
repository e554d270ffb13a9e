// Where a decoded token's time goes, node by node: the fp32 and int4 (MatMulNBits block 128, accuracy_level 4)
// exports of the 100m example model decoded with OnnxModel.generate under onnxruntime's profiler, at 1 intra-op
// thread; per op type the kernel time per decoded token (the prompt's run left out), its share of all nodes, and
// the session's run time. The profiler adds its own cost to every node and times kernels by the wall clock, so small
// ops read high and a loaded machine's preemptions land on random nodes; the unprofiled CPU time per token is
// printed too. --attention: the cost law of the CPU GroupQueryAttention kernel at the 100m shapes,
// 14 ops per graph (one per layer) fed a shared past/present buffer of B positions with P of them filled: CPU µs
// per op for several B and P (what OnnxModel.generate's growing KV buffers are for).
// Usage: npx tsx bench/decode-profile.ts [model dir] [--tokens 32] [--rounds 3] [--attention]

import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { quantizeWeightRtn } from '../src/algo/fake-quant.js';
import { ExternalData, writeModelFile } from '../src/formats/onnx-file.js';
import { buildExportGraph, type ExportLayer } from '../src/graphs/export-graph.js';
import { OnnxModel } from '../src/graphs/onnx-model.js';
import { HfSource } from '../src/model/source.js';
import { float, Graph } from '../src/ort/graph.js';
import { Runtime } from '../src/ort/session.js';
import type { QuantizedModule } from '../src/quant/module-quant.js';
import { presetScheme } from '../src/quant/scheme.js';
import { writeExampleModel } from '../src/steps/example-model.js';
import { tensor, type Tensor } from '../src/tensor.js';
import { median, table } from './util.js';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { tokens: { type: 'string', default: '32' }, rounds: { type: 'string', default: '3' }, attention: { type: 'boolean', default: false } } });
const NEW = Number(values.tokens);
const ROUNDS = Number(values.rounds);
const work = mkdtempSync(join(tmpdir(), 'qf-bench-decode-profile-'));
const plain = new Runtime({ device: 'cpu', threads: 1 });
let dir = positionals[0];
if (!dir) await writeExampleModel(plain, (dir = join(work, 'model')), { size: '100m', seed: 0, dtype: 'f32' });
const src = await HfSource.open(dir);
const cfg = src.config;

async function exportModel(name: string, scheme: string | undefined): Promise<string> {
  const layer = async (l: number): Promise<ExportLayer> => {
    const tensors = await src.layer(l);
    const quant: Record<string, QuantizedModule> = {};
    const s = scheme ? presetScheme(scheme, ['Linear']) : undefined;
    for (const lin of s ? src.arch.layer(cfg, l).linears : []) {
      const w = tensors[`${lin.local}.weight`]!;
      const [rows, cols] = w.dims as [number, number];
      const q = await quantizeWeightRtn(w.data, rows, cols, s!.weights!, { runtime: plain });
      tensors[`${lin.local}.weight`] = tensor('float32', [rows, cols], q.dequantized);
      quant[lin.local] = { weights: s!.weights!, input_activations: s!.input_activations, codes: tensor('int8', [rows, cols], q.codes), scale: tensor('float32', q.scaleDims, q.scale) };
    }
    return { tensors, quant };
  };
  const out = join(work, name);
  await mkdir(join(out, 'onnx'), { recursive: true });
  const data = new ExternalData(join(out, 'onnx', 'model.onnx_data'));
  const g = await buildExportGraph({ config: cfg, arch: src.arch, tensor: (n) => src.tensor(n), layer }, data, { accuracyLevel: 4 });
  await data.finish();
  await writeModelFile(join(out, 'onnx', 'model.onnx'), g.build());
  return out;
}

interface TraceEvent { cat?: string; name?: string; ts?: number; dur?: number; args?: { op_name?: string } }

/** µs per decoded token by op type, and of the whole run, from a profile of `rounds` generations of NEW tokens */
function perToken(file: string): { ops: Map<string, number>; run: number; nodes: number } {
  const events = JSON.parse(readFileSync(file, 'utf8')) as TraceEvent[];
  const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').sort((a, b) => a.ts! - b.ts!);
  // the first run of each generation is the prompt's; the warm-up generation is the first NEW runs
  const decode = runs.filter((_, i) => i % NEW !== 0);
  const inDecode = (ts: number): boolean => {
    let lo = 0;
    let hi = runs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (runs[mid]!.ts! <= ts) lo = mid;
      else hi = mid - 1;
    }
    return lo % NEW !== 0 && ts <= runs[lo]!.ts! + runs[lo]!.dur!;
  };
  const ops = new Map<string, number>();
  let nodes = 0;
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name?.endsWith('_kernel_time') || !inDecode(e.ts!)) continue;
    nodes++;
    ops.set(e.args?.op_name ?? '?', (ops.get(e.args?.op_name ?? '?') ?? 0) + e.dur!);
  }
  for (const [k, v] of ops) ops.set(k, v / decode.length);
  return { ops, run: median(decode.map((r) => r.dur!)), nodes: nodes / decode.length };
}

const profiles: { name: string; ops: Map<string, number>; run: number; nodes: number; cpu: number }[] = [];
for (const [name, scheme] of [['fp32', undefined], ['int4', 'W4A16']] as const) {
  const exported = await exportModel(name, scheme);
  // unprofiled CPU time per token first, then the same generations under the profiler
  const model = await OnnxModel.open(plain, exported, cfg);
  await model.generate([1, 300, 301], NEW, false);
  const cpu: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const c0 = process.cpuUsage();
    await model.generate([1, 300, 301], NEW, false);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000 / NEW);
  }
  await model.close();
  const profileDir = join(work, `profile-${name}`);
  const rt = new Runtime({ device: 'cpu', threads: 1, profileDir });
  const profiled = await OnnxModel.open(rt, exported, cfg);
  for (let r = 0; r <= ROUNDS; r++) await profiled.generate([1, 300, 301], NEW, false);
  await profiled.close(); // onnxruntime writes the trace when the session is released
  await rt.close();
  const file = readdirSync(profileDir).find((f) => f.endsWith('.json'));
  if (!file) throw new Error(`onnxruntime wrote no profile in ${profileDir}`);
  profiles.push({ name, ...perToken(join(profileDir, file)), cpu: median(cpu) });
}
const opNames = [...new Set(profiles.flatMap((p) => [...p.ops.keys()]))].sort((a, b) => (profiles[1]!.ops.get(b) ?? 0) - (profiles[1]!.ops.get(a) ?? 0));
const us = (x: number | undefined): string => (x === undefined ? '' : x.toFixed(1));
console.log(`model: ${dir}; ${NEW} new tokens after a 3-token prompt, ${ROUNDS} profiled rounds after a warm-up, 1 thread; load average ${loadavg()[0]!.toFixed(2)}\n`);
const total = (p: (typeof profiles)[number]): number => [...p.ops.values()].reduce((a, b) => a + b, 0);
const share = (p: (typeof profiles)[number], x: number | undefined): string => (x === undefined ? '' : `${((100 * x) / total(p)).toFixed(1)}%`);
// the profiler times each kernel by the wall clock: on a loaded machine preemption lands on random nodes, so read
// the shares of the big ops, and the unprofiled CPU time for the token
console.log(table(['op type', ...profiles.flatMap((p) => [`${p.name} µs per token (profiled)`, `${p.name} share`])], [
  ...opNames.map((op) => [op, ...profiles.flatMap((p) => [us(p.ops.get(op)), share(p, p.ops.get(op))])]),
  ['all nodes', ...profiles.flatMap((p) => [us(total(p)), '100%'])],
  ['nodes per token', ...profiles.flatMap((p) => [p.nodes.toFixed(0), ''])],
  ['session run (median, profiled)', ...profiles.flatMap((p) => [us(p.run), ''])],
  ['CPU per token, unprofiled (median)', ...profiles.flatMap((p) => [us(p.cpu * 1000), ''])],
]));

if (values.attention) {
  // 14 GroupQueryAttention ops as the 100m export runs them at decode (packed q/k/v, rotary inside)
  const [H, KV, HD, L] = [cfg.numHeads, cfg.numKvHeads, cfg.headDim, cfg.numLayers];
  const row = (B: number, P: number): Promise<number> => gqaMicros(H, KV, HD, L, B, P);
  const rows: string[][] = [];
  for (const [B, P] of [[34, 20], [64, 20], [128, 20], [512, 20], [1024, 20], [128, 127], [1024, 1023]] as const) rows.push([String(B), String(P + 1), (await row(B, P)).toFixed(1)]);
  console.log(`\n${table(['KV buffer positions B', 'positions attended (P + 1)', 'CPU µs per GroupQueryAttention'], rows)}`);
}

/** CPU µs per GroupQueryAttention op, median of 9 × 100 runs of `layers` ops sharing one input */
async function gqaMicros(H: number, KV: number, HD: number, layers: number, B: number, P: number): Promise<number> {
  const g = new Graph('gqa_decode');
  const qkv = g.input('qkv', 'float32', [1, 1, (H + 2 * KV) * HD]);
  const seqlensK = g.input('seqlens_k', 'int32', [1]);
  const total = g.input('total_length', 'int32', []);
  const caches = [0.5, 0.25].map((v, i) => g.constant(tensor('float32', [cfg.maxPositions, HD / 2], new Float32Array((cfg.maxPositions * HD) / 2).fill(v)), i ? 'sin' : 'cos'));
  const feeds: Record<string, Tensor> = { qkv: tensor('float32', [1, 1, (H + 2 * KV) * HD], new Float32Array((H + 2 * KV) * HD).fill(0.1)), seqlens_k: tensor('int32', [1], Int32Array.of(P)), total_length: tensor('int32', [], Int32Array.of(P + 1)) };
  const into: Record<string, Tensor> = {};
  for (let l = 0; l < layers; l++) {
    const past = ['key', 'value'].map((kv) => {
      feeds[`${kv}${l}`] = tensor('float32', [1, KV, B, HD], new Float32Array(KV * B * HD).fill(0.01));
      return g.input(`${kv}${l}`, 'float32', [1, KV, B, HD]);
    });
    const [attn, key, value] = g.opN('GroupQueryAttention', [qkv, undefined, undefined, past[0]!, past[1]!, seqlensK, total, caches[0]!, caches[1]!], 3, { num_heads: H, kv_num_heads: KV, do_rotary: 1, rotary_interleaved: 0, scale: float(1 / Math.sqrt(HD)) }, { domain: 'com.microsoft' });
    g.output(attn!, `attn${l}`);
    into[g.output(key!, `present_key${l}`).name] = feeds[`key${l}`]!;
    into[g.output(value!, `present_value${l}`).name] = feeds[`value${l}`]!;
  }
  const kernel = await plain.kernel(`decode-profile.gqa:${B}:${P}`, () => g);
  for (let i = 0; i < 20; i++) await kernel.run(feeds, undefined, into);
  const cpu: number[] = [];
  for (let r = 0; r < 9; r++) {
    const c0 = process.cpuUsage();
    for (let i = 0; i < 100; i++) await kernel.run(feeds, undefined, into);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 100 / layers);
  }
  return median(cpu);
}

await src.close();
await plain.close();
rmSync(work, { recursive: true, force: true });
