// Step `capture`: per-input-channel activation statistics of one decoder layer on its calibration inputs, for the
// smoothing stages: max |X| (SmoothQuant) or mean |X| (AWQ) of the input of each requested Linear, over every
// calibration token. The reductions run inside onnxruntime as taps on the layer graph; only [channels] vectors
// cross into JavaScript. The statistics depend on the model entering the stage only, so sweeps over
// smoothing_strength, duo_scaling or n_grid reuse them. With `next_hidden` the same forward pass also writes
// the layer's outputs (what a `propagate` step would write), so the calibration chain costs no second pass.
// With input `partials` (recipe parallel.calibration_shards > 1) the step is the reduce of capture-shard steps
// instead (capture-partials.ts).

import { join } from 'node:path';
import { SafetensorsFile, writeSafetensors } from '../formats/safetensors.js';
import type { InputSite } from '../model/arch.js';
import type { LayerTap } from '../graphs/layer-runner.js';
import type { Value } from '../ort/graph.js';
import { HfSource } from '../model/source.js';
import { tensor, type Tensor } from '../tensor.js';
import { forEachBatch, readHidden, writeHidden } from './activations.js';
import { reducePartialStats } from './capture-partials.js';
import { CaptureError, STATISTICS, STATS_FILE, statName, type Statistic } from './capture-statistic.js';
import { actQuantOf, loadLayerInput, type LayerState } from './layer-state.js';
import { input, inputList, optionalInput, requireModel, type StepImpl } from './types.js';
import type { Runtime } from '../ort/session.js';
import type { Json } from '../cache/key.js';

export { CaptureError, STATISTICS, STATS_FILE, statName, type Statistic };

export interface CaptureParams {
  layer: number;
  statistic: Statistic;
  /** Linears (local names) whose input statistics are recorded */
  modules: string[];
  /** also write the layer's outputs (the next layer's calibration inputs) as hidden.safetensors */
  next_hidden?: boolean;
}

/**
 * per-site |X| reductions over batch and time: ReduceMax, or ReduceSum in float64 (for means: a float32 sum
 * over a batch's thousands of tokens would carry ~1e-6 relative error, and differ with how windows are batched)
 */
function statisticTap(sites: readonly InputSite[], statistic: Statistic): LayerTap {
  return {
    key: `capture:${statistic}${statistic === 'absmean' ? '64' : ''}:${sites.join(',')}`,
    build(g, v) {
      const out: Record<string, Value> = {};
      for (const s of sites) {
        const abs = g.op('Abs', [v.sites[s]!]);
        out[`stat_${s}`] = statistic === 'absmax' ? g.reduceMax(abs, [0, 1], false) : g.reduceSum(g.cast(abs, 'float64'), [0, 1], false);
      }
      return out;
    },
  };
}

/** what a capture (or a shard of one) runs: the layer over `hidden`, recording `statistic` of `modules`' inputs */
export interface CaptureRun {
  rt: Runtime;
  src: HfSource;
  layer: number;
  statistic: Statistic;
  modules: readonly string[];
  state: LayerState;
  hidden: Tensor<'float32'>;
  /** the layer's outputs of each batch of windows from window `start`, when wanted (the chain's next link) */
  onOut?: (out: Float32Array, start: number) => void;
  progress?: (done: number, total: number) => void;
}

/**
 * Per module, max |x| (absmax) or Σ|x| (absmean, float64 throughout) over every token of `hidden`; modules
 * reading one input site share its array.
 */
export async function captureSums(c: CaptureRun): Promise<Map<string, Float64Array>> {
  const spec = c.src.arch.layer(c.src.config, c.layer);
  const linears = spec.linears;
  const siteOf = new Map<string, InputSite>();
  for (const m of c.modules) {
    const l = linears.find((x) => x.local === m);
    if (!l) throw new CaptureError('bad-capture-params', `module "${m}" is not a Linear of a decoder layer; expected one of: ${linears.map((x) => x.local).join(', ')}`);
    siteOf.set(m, l.site);
  }
  const sites = [...new Set(siteOf.values())].sort();
  const acc = new Map<InputSite, Float64Array>();
  for (const s of sites) acc.set(s, new Float64Array(linears.find((l) => l.site === s)!.inFeatures));
  const tap = statisticTap(sites, c.statistic);
  const max = c.statistic === 'absmax';
  await forEachBatch(c.rt, c.src.config, spec, c.state.tensors, c.hidden, { actQuant: actQuantOf(c.state.quant), tap, skipOut: !c.onOut }, (out, start) => {
    c.onOut?.(out['out']!.data as Float32Array, start);
    for (const s of sites) {
      const v = out[`stat_${s}`]!.data as Float32Array | Float64Array;
      const a = acc.get(s)!;
      for (let j = 0; j < v.length; j++) a[j] = max ? Math.max(a[j] as number, v[j] as number) : (a[j] as number) + (v[j] as number);
    }
  }, c.progress);
  return new Map(c.modules.map((m) => [m, acc.get(siteOf.get(m)!)!] as const));
}

export function checkStatistic(statistic: Statistic): void {
  if (!STATISTICS.includes(statistic)) {
    throw new CaptureError('bad-capture-params', `statistic "${statistic}" is not supported; expected one of: ${STATISTICS.join(', ')}`);
  }
}

/** stats.safetensors from per-module max |x| or Σ|x| over `tokens` tokens (means are divided here, in float64) */
export async function writeStatistics(dir: string, statistic: Statistic, sums: ReadonlyMap<string, Float64Array>, tokens: number): Promise<void> {
  const tensors: [string, Tensor][] = [...sums].map(([m, a]) => [statName(m, statistic), tensor('float32', [a.length], Float32Array.from(a, (v) => (statistic === 'absmean' ? v / tokens : v)))]);
  await writeSafetensors(join(dir, STATS_FILE), tensors, { statistic, tokens: String(tokens) });
}

export const captureStep: StepImpl<'capture', CaptureParams> = {
  kind: 'capture',
  async run(ctx): Promise<Json> {
    const { layer, statistic, modules, next_hidden: nextHidden = false } = ctx.params;
    checkStatistic(statistic);
    const partials = inputList(ctx, 'partials');
    if (partials.length > 0) {
      // the reduce of capture-shard steps (recipe parallel.calibration_shards > 1)
      const { sums, tokens } = await reducePartialStats(partials.map((p) => p.dir), modules, statistic);
      await writeStatistics(ctx.outDir, statistic, sums, tokens);
      return { layer, statistic, tokens, modules, shards: partials.length };
    }
    const src = await HfSource.open(requireModel(ctx));
    try {
      const state = await loadLayerInput(src, optionalInput(ctx, 'state'), layer);
      const hidden = await readHidden(input(ctx, 'hidden').dir);
      const [N, T, H] = hidden.dims as [number, number, number];
      const next = nextHidden ? new Float32Array(N * T * H) : undefined;
      const onOut = next ? (out: Float32Array, start: number): void => next.set(out, start * T * H) : undefined;
      const sums = await captureSums({ rt: ctx.runtime, src, layer, statistic, modules, state, hidden, onOut, progress: ctx.progress });
      const tokens = N * T;
      await writeStatistics(ctx.outDir, statistic, sums, tokens);
      if (next) await writeHidden(ctx.outDir, tensor('float32', [N, T, H], next));
      return { layer, statistic, tokens, modules };
    } finally {
      await src.close();
    }
  },
};

/** the recorded `statistic` of the input of `module` from a capture step's directory */
export async function readStatistic(dir: string, module: string, statistic: Statistic): Promise<Float32Array> {
  const f = await SafetensorsFile.open(join(dir, STATS_FILE));
  try {
    const name = statName(module, statistic);
    if (!f.has(name)) {
      throw new CaptureError('missing-statistic', `${f.path} has no "${name}" (has ${f.names().join(', ')}); the capture step must record ${statistic} of ${module}`);
    }
    return (await f.readAs(name, 'float32')).data;
  } finally {
    await f.close();
  }
}
