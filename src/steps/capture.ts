// Step `capture`: per-input-channel activation statistics of one decoder layer on its calibration inputs, for the
// smoothing stages: max |X| (SmoothQuant) or mean |X| (AWQ) of the input of each requested Linear, over every
// calibration token. The reductions run inside onnxruntime as taps on the layer graph; only [channels] vectors
// cross into JavaScript. The statistics depend on the model entering the stage only, so sweeps over
// smoothing_strength, duo_scaling or n_grid reuse them.

import { join } from 'node:path';
import { SafetensorsFile, writeSafetensors } from '../formats/safetensors.js';
import type { InputSite } from '../model/arch.js';
import type { LayerTap } from '../graphs/layer-runner.js';
import type { Value } from '../ort/graph.js';
import { HfSource } from '../model/source.js';
import { tensor, type Tensor } from '../tensor.js';
import { forEachBatch, readHidden } from './activations.js';
import { actQuantOf, loadLayerInput } from './layer-state.js';
import { input, optionalInput, requireModel, type StepImpl } from './types.js';
import { ReasonedError, type MethodReason } from '../diag/failure.js';

export const STATS_FILE = 'stats.safetensors';
export const STATISTICS = ['absmax', 'absmean'] as const;
export type Statistic = (typeof STATISTICS)[number];

export interface CaptureParams {
  layer: number;
  statistic: Statistic;
  /** Linears (local names) whose input statistics are recorded */
  modules: string[];
}

/** the tensor holding `statistic` of the input of `module` in stats.safetensors */
export const statName = (module: string, statistic: Statistic): string => `${module}.input_${statistic}`;

export class CaptureError extends ReasonedError<MethodReason> {}

/** per-site |X| reductions over batch and time: ReduceSum (for means) or ReduceMax */
function statisticTap(sites: readonly InputSite[], statistic: Statistic): LayerTap {
  return {
    key: `capture:${statistic}:${sites.join(',')}`,
    build(g, v) {
      const out: Record<string, Value> = {};
      for (const s of sites) {
        const abs = g.op('Abs', [v.sites[s]!]);
        out[`stat_${s}`] = statistic === 'absmax' ? g.reduceMax(abs, [0, 1], false) : g.reduceSum(abs, [0, 1], false);
      }
      return out;
    },
  };
}

export const captureStep: StepImpl<'capture', CaptureParams> = {
  kind: 'capture',
  version: 1,
  async run(ctx) {
    const { layer, statistic, modules } = ctx.params;
    if (!STATISTICS.includes(statistic)) {
      throw new CaptureError('bad-capture-params', `statistic "${statistic}" is not supported; expected one of: ${STATISTICS.join(', ')}`);
    }
    const src = await HfSource.open(requireModel(ctx));
    try {
      const spec = src.arch.layer(src.config, layer);
      const linears = spec.linears;
      const siteOf = new Map<string, InputSite>();
      for (const m of modules) {
        const spec = linears.find((l) => l.local === m);
        if (!spec) throw new CaptureError('bad-capture-params', `module "${m}" is not a Linear of a decoder layer; expected one of: ${linears.map((l) => l.local).join(', ')}`);
        siteOf.set(m, spec.site);
      }
      const sites = [...new Set(siteOf.values())].sort();
      const state = await loadLayerInput(src, optionalInput(ctx, 'state'), layer);
      const hidden = await readHidden(input(ctx, 'hidden').dir);
      const [N, T] = hidden.dims as [number, number, number];
      const acc = new Map<InputSite, Float64Array>();
      const tap = statisticTap(sites, statistic);
      await forEachBatch(ctx.runtime, src.config, spec, state.tensors, hidden, { actQuant: actQuantOf(state.quant), tap, skipOut: true }, (out) => {
        for (const s of sites) {
          const v = out[`stat_${s}`]!.data as Float32Array;
          let a = acc.get(s);
          if (!a) acc.set(s, (a = new Float64Array(v.length)));
          for (let j = 0; j < v.length; j++) a[j] = statistic === 'absmax' ? Math.max(a[j] as number, v[j] as number) : (a[j] as number) + (v[j] as number);
        }
      }, ctx.progress);
      const tokens = N * T;
      const tensors: [string, Tensor][] = modules.map((m) => {
        const a = acc.get(siteOf.get(m)!) ?? new Float64Array(0);
        return [statName(m, statistic), tensor('float32', [a.length], Float32Array.from(a, (v) => (statistic === 'absmean' ? v / tokens : v)))];
      });
      await writeSafetensors(join(ctx.outDir, STATS_FILE), tensors, { statistic, tokens: String(tokens) });
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
