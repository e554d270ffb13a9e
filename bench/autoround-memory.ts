// What one onnxruntime call of AutoRound's block session holds: builds the block graph of one layer of a model
// (W4A16 on every Linear, as the step does), feeds it the layer's real weights and a micro-batch of random
// hidden states, and samples the process's RSS every 5 ms (a worker thread: session.run blocks the main one)
// before the session exists, after it is created, and during two runs. The difference between a run's peak
// and the RSS before it is what onnxruntime allocates for that run (forward values kept for the backward
// pass, backward temporaries, outputs). Gradients are written into buffers allocated once, as the step does.
// Beside the measurement, a static liveness count over the graph's node order (each node's outputs allocated
// when it runs, each value freed after its last reader; onnxruntime's own plan reuses buffers in place and
// may order nodes differently) says which values are alive at the peak: forward values the backward pass
// reads, split into activations (a batch dim) and weight-sized values (the in-graph quantizer's).
//
//   npx tsx bench/autoround-memory.ts [--model /tmp/qf-large-1b] [--layer 0] [--windows 4] [--seq-len 512]

import { parseArgs } from 'node:util';
import { quantLayout, toGroups } from '../src/algo/autoround-layout.js';
import { initialParams, widenedRange } from '../src/algo/autoround.js';
import { observeWeight } from '../src/algo/observers.js';
import { autoroundBlockGraph, autoroundBlockKernel, gradientBuffers, runAutoRoundBlock, type AutoRoundBlockSpec, type BlockConstants } from '../src/graphs/autoround-kernel.js';
import { inferFacts } from '../src/ort/shape-infer.js';
import { HfSource } from '../src/model/source.js';
import { Runtime } from '../src/ort/session.js';
import { presetScheme } from '../src/quant/scheme.js';
import { tensor } from '../src/tensor.js';
import { rssMb, rssSampler } from './util.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: '/tmp/qf-large-1b' },
    layer: { type: 'string', default: '0' },
    windows: { type: 'string', default: '4' },
    'seq-len': { type: 'string', default: '512' },
  },
});
const MiB = 2 ** 20;

const [layerIdx, B, T] = [Number(values.layer), Number(values.windows), Number(values['seq-len'])];
const rt = new Runtime({ device: 'cpu' });
const src = await HfSource.open(values.model);
const cfg = src.config;
const layer = src.arch.layer(cfg, layerIdx);
const rss = rssSampler(5);
const line = (what: string, mb: number): void => console.log(`| ${what} | ${mb.toFixed(0)} |`);
console.log(`${values.model} layer ${layerIdx}, micro-batch ${B} × ${T} tokens, hidden ${cfg.hiddenSize}, intermediate ${cfg.intermediateSize}\n`);
console.log('| point | RSS MiB |\n|---|---:|');
line('process before the layer', rssMb());
const tensors = await src.layer(layerIdx);
const weights = presetScheme('W4A16', ['Linear']).weights!;
const spec: AutoRoundBlockSpec = {
  cfg,
  layer,
  targets: layer.linears.map((l) => ({ local: l.local, layout: quantLayout(l.outFeatures, l.inFeatures, weights.strategy, weights.group_size ?? null), bits: weights.num_bits, symmetric: weights.symmetric })),
  actQuant: new Map(),
  minmax: true,
};
const constants: BlockConstants = { tensors, targets: {} };
for (const t of spec.targets) {
  const w = tensors[`${t.local}.weight`]!.data as Float32Array;
  constants.targets[t.local] = { w: toGroups(w, t.layout), ...widenedRange(await observeWeight(w, t.layout.rows, t.layout.cols, weights, { runtime: rt })) };
}
const params = Object.fromEntries(spec.targets.map((t) => [t.local, initialParams(t.layout)]));
const random = (n: number): Float32Array => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);
const [x, y] = [tensor('float32', [B, T, cfg.hiddenSize], random(B * T * cfg.hiddenSize)), tensor('float32', [B, T, cfg.hiddenSize], random(B * T * cfg.hiddenSize))];
const grads = gradientBuffers(spec);
for (const g of Object.values(grads)) [g.v, g.minScale, g.maxScale].forEach((a) => a?.fill(0));
line('+ layer weights fp32, V and factors, gradient buffers, x and target', rssMb());
const kernel = await autoroundBlockKernel(rt, spec);
line('+ block session created', rssMb());
for (let run = 1; run <= 2; run++) {
  const before = rssMb();
  rss.reset();
  const t0 = performance.now();
  await runAutoRoundBlock(kernel, spec, constants, x, y, params, grads);
  const peak = rss.peakMb();
  line(`run ${run}: peak (${((performance.now() - t0) / 1000).toFixed(1)} s; +${(peak - before).toFixed(0)} over the RSS before it)`, peak);
  line(`run ${run}: after`, rssMb());
}
liveness(spec, B, T);
const weightMb = layer.linears.reduce((a, l) => a + l.inFeatures * l.outFeatures, 0) * 4 / MiB;
console.log(`\none copy of the layer's Linear weights in fp32: ${weightMb.toFixed(1)} MiB; one [${B}·${T}, ${cfg.intermediateSize}] activation ${((B * T * cfg.intermediateSize * 4) / MiB).toFixed(1)} MiB; one attention-score tensor [${B}, ${cfg.numHeads}, ${T}, ${T}] ${((B * cfg.numHeads * T * T * 4) / MiB).toFixed(1)} MiB`);
await rss.stop();
await src.close();
await rt.close();

/** the static liveness count described at the top: peak bytes and what is alive then */
function liveness(spec: AutoRoundBlockSpec, batch: number, seq: number): void {
  const g = autoroundBlockGraph(spec);
  const facts = inferFacts(g);
  const bytes = { float32: 4, float16: 2, bool: 1, int64: 8, int32: 4, float64: 8 } as Record<string, number>;
  const sizeOf = (name: string): { mb: number; act: boolean } => {
    const f = facts.get(name);
    if (!f?.shape) return { mb: 0, act: false };
    let n = 1;
    let act = false;
    for (const d of f.shape) {
      if (d === 'B') [n, act] = [n * batch, true];
      else if (d === 'T') [n, act] = [n * seq, true];
      else if (typeof d === 'number') n *= d;
      else return { mb: 0, act: true };
    }
    return { mb: (n * (bytes[f.dtype ?? 'float32'] ?? 4)) / MiB, act };
  };
  const lossIn = g.nodes.find((n) => n.opType === 'Identity' && n.outputs[0] === 'loss')!.inputs[0]!;
  const lossAt = g.nodes.findIndex((n) => n.outputs.includes(lossIn));
  const lastUse = new Map<string, number>();
  g.nodes.forEach((n, i) => n.inputs.forEach((v) => lastUse.set(v, i)));
  const outputs = new Set(g.outputs.map((o) => o.name));
  const live = new Map<string, { mb: number; act: boolean; fwd: boolean; op: string }>();
  let [cur, peak, peakAt] = [0, 0, 0];
  let atPeak: typeof live = new Map();
  g.nodes.forEach((n, i) => {
    for (const o of n.outputs) {
      const s = sizeOf(o);
      live.set(o, { ...s, fwd: i <= lossAt, op: n.opType });
      cur += s.mb;
    }
    if (cur > peak) [peak, peakAt, atPeak] = [cur, i, new Map(live)];
    for (const v of new Set([...n.inputs, ...n.outputs])) {
      if ((lastUse.get(v) ?? -1) <= i && !outputs.has(v) && live.has(v)) {
        cur -= live.get(v)!.mb;
        live.delete(v);
      }
    }
  });
  const sum = (f: (v: { mb: number; act: boolean; fwd: boolean }) => boolean): number => [...atPeak.values()].filter(f).reduce((a, v) => a + v.mb, 0);
  console.log(`\nstatic liveness over ${g.nodes.length} nodes (loss at node ${lossAt}): peak ${peak.toFixed(0)} MiB at node ${peakAt} (${peakAt > lossAt ? 'backward' : 'forward'} pass, ${g.nodes[peakAt]!.opType})`);
  console.log(`alive then: forward activations ${sum((v) => v.fwd && v.act).toFixed(0)} MiB, forward weight-sized ${sum((v) => v.fwd && !v.act).toFixed(0)} MiB, backward activations ${sum((v) => !v.fwd && v.act).toFixed(0)} MiB, backward weight-sized ${sum((v) => !v.fwd && !v.act).toFixed(0)} MiB`);
  const byOp = new Map<string, number>();
  for (const v of atPeak.values()) if (v.mb >= 1) byOp.set(`${v.fwd ? 'fwd' : 'bwd'} ${v.act ? 'act' : 'weight'} ${v.op}`, (byOp.get(`${v.fwd ? 'fwd' : 'bwd'} ${v.act ? 'act' : 'weight'} ${v.op}`) ?? 0) + v.mb);
  console.log([...byOp].sort((a, b) => b[1] - a[1]).slice(0, 14).map(([k, mb]) => `${k} ${mb.toFixed(0)}`).join('; '));
}
