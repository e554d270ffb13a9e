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
import { SafetensorsFile, writeSafetensors } from '../formats/safetensors.js';
import { tensor, type Tensor } from '../tensor.js';
import { CaptureError, type Statistic } from './capture-statistic.js';

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

async function readPartial(dir: string, modules: readonly string[], statistic: Statistic): Promise<PartialStats> {
  const path = join(dir, PARTIAL_STATS_FILE);
  const f = await SafetensorsFile.open(path);
  try {
    if (f.metadata['statistic'] !== statistic) throw new CaptureError('missing-statistic', `${path} holds ${f.metadata['statistic'] ?? 'no'} statistic, expected ${statistic}`);
    const windows = (f.metadata['windows'] ?? '').split(',').map(Number);
    if (windows.length !== 3 || windows.some((w) => !Number.isInteger(w))) throw new CaptureError('missing-statistic', `${path}: metadata "windows" should be "start,end,of", found ${JSON.stringify(f.metadata['windows'])}`);
    const sums = new Map<string, Float64Array>();
    for (const m of modules) {
      const name = partialName(m, statistic);
      if (!f.has(name)) throw new CaptureError('missing-statistic', `${path} has no "${name}" (has ${f.names().join(', ')}); the shard must record ${statistic} of ${m}`);
      sums.set(m, Float64Array.from((await f.read(name)).data as Float32Array | Float64Array));
    }
    const tokens = ((await f.read('tokens')).data as Float64Array)[0] as number;
    return { statistic, sums, tokens, windows: windows as [number, number, number] };
  } finally {
    await f.close();
  }
}

/**
 * The shards' statistics reduced in their order: per module the max of the maxima, or Σ of the sums (float64),
 * and the total token count. The shards must cover the layer's windows exactly once, in order.
 */
export async function reducePartialStats(dirs: readonly string[], modules: readonly string[], statistic: Statistic): Promise<{ sums: Map<string, Float64Array>; tokens: number }> {
  const sums = new Map<string, Float64Array>();
  let tokens = 0;
  let next = 0;
  let of = -1;
  for (const dir of dirs) {
    const p = await readPartial(dir, modules, statistic);
    const [start, end, total] = p.windows;
    if (start !== next || (of >= 0 && total !== of)) {
      throw new CaptureError('missing-statistic', `the capture shards do not cover the calibration windows in order: ${join(dir, PARTIAL_STATS_FILE)} holds windows [${start}, ${end}) of ${total}, expected ${next} next`);
    }
    [next, of] = [end, total];
    tokens += p.tokens;
    for (const [m, a] of p.sums) {
      const acc = sums.get(m);
      if (!acc) {
        sums.set(m, Float64Array.from(a));
        continue;
      }
      if (acc.length !== a.length) throw new CaptureError('missing-statistic', `${join(dir, PARTIAL_STATS_FILE)}: ${m} has ${a.length} channels, the first shard ${acc.length}`);
      for (let j = 0; j < a.length; j++) acc[j] = statistic === 'absmax' ? Math.max(acc[j] as number, a[j] as number) : (acc[j] as number) + (a[j] as number);
    }
  }
  if (next !== of) throw new CaptureError('missing-statistic', `the ${dirs.length} capture shards cover windows [0, ${next}) of ${of}`);
  return { sums, tokens };
}
