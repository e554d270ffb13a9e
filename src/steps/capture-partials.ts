// Partial activation statistics of data-parallel SmoothQuant/AWQ calibration (recipe
// `parallel.calibration_shards`): a capture-shard step runs one decoder layer over a disjoint range of the
// calibration windows and stores, per module, max |x| (absmax) or the float64 sum Σ|x| (absmean) over its
// tokens, with the token count and its window range. The layer's capture step reduces the shards in shard
// order: the max of the maxima (exactly the one-pass max) or Σ of the sums divided by Σ of the counts, in
// float64 (the one-pass mean up to the order of float additions).
//
//   partial-stats.safetensors   <module>.input_absmax float32 [in] | <module>.input_abssum float64 [in]
//                               tokens float64 [1]; metadata statistic, windows "start,end,of"

import { join } from 'node:path';
import { writeSafetensors } from '../formats/safetensors.js';
import { tensor, type Tensor } from '../tensor.js';
import { CaptureError, type Statistic } from './capture-statistic.js';
import { addInto, forEachShard } from './shard-files.js';

export const PARTIAL_STATS_FILE = 'partial-stats.safetensors';

/** the tensor of a shard's partial statistic of `module`'s input */
const partialName = (module: string, statistic: Statistic): string => `${module}.input_${statistic === 'absmax' ? 'absmax' : 'abssum'}`;

export interface PartialStats {
  statistic: Statistic;
  /** per module: max |x| or Σ|x| over the shard's tokens */
  sums: ReadonlyMap<string, Float64Array>;
  tokens: number;
  /** the shard's windows [start, end) of `of` */
  windows: readonly [number, number, number];
}

export async function writePartialStats(dir: string, p: PartialStats): Promise<void> {
  const tensors: [string, Tensor][] = [...p.sums].map(([m, a]) => [
    partialName(m, p.statistic),
    p.statistic === 'absmax' ? tensor('float32', [a.length], Float32Array.from(a)) : tensor('float64', [a.length], a),
  ]);
  tensors.push(['tokens', tensor('float64', [1], Float64Array.of(p.tokens))]);
  await writeSafetensors(join(dir, PARTIAL_STATS_FILE), tensors, { statistic: p.statistic, windows: p.windows.join(',') });
}

/**
 * The shards' statistics reduced in their order: per module the max of the maxima, or Σ of the sums (float64),
 * and the total token count. The shards must cover the layer's windows exactly once, in order.
 */
export async function reducePartialStats(dirs: readonly string[], modules: readonly string[], statistic: Statistic): Promise<{ sums: Map<string, Float64Array>; tokens: number }> {
  const sums = new Map<string, Float64Array>();
  let tokens = 0;
  const fail = (message: string): CaptureError => new CaptureError('missing-statistic', message);
  await forEachShard(dirs, PARTIAL_STATS_FILE, 'capture shards', fail, async (shard) => {
    const found = shard.file.metadata['statistic'];
    if (found !== statistic) throw fail(`${shard.path} holds ${found ?? 'no'} statistic, expected ${statistic}`);
    for (const m of modules) {
      const a = await shard.float64(partialName(m, statistic), `the shard must record ${statistic} of ${m}`);
      const acc = sums.get(m);
      if (!acc) {
        sums.set(m, Float64Array.from(a));
        continue;
      }
      if (acc.length !== a.length) throw fail(`${shard.path}: ${m} has ${a.length} channels, the first shard ${acc.length}`);
      if (statistic === 'absmax') for (let j = 0; j < a.length; j++) acc[j] = Math.max(acc[j] as number, a[j] as number);
      else addInto(acc, a);
    }
    tokens += (await shard.float64('tokens', 'the shard must record its token count'))[0] as number;
  });
  return { sums, tokens };
}
