// Partial Hessians of data-parallel GPTQ calibration (recipe `parallel.calibration_shards`): a shard step
// (gptq-hessian.ts) runs one decoder layer over a disjoint range of the calibration windows and stores, per
// Linear input site, the float64 sum XᵀX over its tokens, its token count, and the max |x| of the sites that
// static input quantization needs. The gptq step sums the shards in shard order (float64), then normalises as
// it does when it captures them itself: H = 2·ΣXᵀX / Σn. Results equal the unsharded run up to the order of
// the float64 additions.
//
//   hessian.safetensors   xtx.<site> float64 [in, in]   range.<site> float32 [1]   tokens float64 [1]

import { join } from 'node:path';
import { SafetensorsFile, writeSafetensors } from '../formats/safetensors.js';
import type { InputSite } from '../model/arch.js';
import { tensor, type Tensor } from '../tensor.js';
import { addInto } from './shard-files.js';

export const HESSIAN_FILE = 'hessian.safetensors';

export interface HessianPartial {
  /** ΣXᵀX over the shard's tokens, per input site */
  xtx: Map<InputSite, Float64Array>;
  /** max |x| per site, for the sites static input quantization needs */
  ranges: Map<InputSite, number>;
  tokens: number;
}

export async function writeHessianPartial(dir: string, p: HessianPartial): Promise<void> {
  const tensors: [string, Tensor][] = [];
  for (const [s, h] of p.xtx) tensors.push([`xtx.${s}`, tensor('float64', [Math.round(Math.sqrt(h.length)), Math.round(Math.sqrt(h.length))], h)]);
  for (const [s, m] of p.ranges) tensors.push([`range.${s}`, tensor('float32', [1], Float32Array.of(m))]);
  tensors.push(['tokens', tensor('float64', [1], Float64Array.of(p.tokens))]);
  await writeSafetensors(join(dir, HESSIAN_FILE), tensors);
}

/** one shard's token count, the sites' XᵀX sums and the ranges of `rangeSites` */
async function readPartial(dir: string, sites: readonly InputSite[], rangeSites: readonly InputSite[]): Promise<HessianPartial> {
  const f = await SafetensorsFile.open(join(dir, HESSIAN_FILE));
  try {
    const read = async <D extends 'float32' | 'float64'>(name: string, dtype: D): Promise<Tensor<D>['data']> => {
      if (!f.tensors.has(name)) throw new Error(`${join(dir, HESSIAN_FILE)}: no tensor ${name}; the shard step captured other sites`);
      const t = await f.read(name);
      if (t.dtype !== dtype) throw new Error(`${join(dir, HESSIAN_FILE)}: ${name} is ${t.dtype}, expected ${dtype}`);
      return (t as Tensor<D>).data;
    };
    const xtx = new Map<InputSite, Float64Array>();
    for (const s of sites) {
      xtx.set(s, (await read(`xtx.${s}`, 'float64')) as Float64Array);
    }
    const ranges = new Map<InputSite, number>();
    for (const s of rangeSites) {
      ranges.set(s, (await read(`range.${s}`, 'float32'))[0] as number);
    }
    return { xtx, ranges, tokens: (await read('tokens', 'float64'))[0] as number };
  } finally {
    await f.close();
  }
}

/**
 * H = 2·ΣXᵀX / Σn of each site in `which` from the shard directories (summed in their order, float64); the
 * shards' max |x| of `rangeSites` are folded into `ranges`. `tokens` is the layer's calibration token count,
 * which the shards' counts must add up to (disjoint ranges covering every window).
 */
export async function sumHessianPartials(
  dirs: readonly string[],
  which: readonly InputSite[],
  width: (s: InputSite) => number,
  tokens: number,
  rangeSites: readonly InputSite[],
  ranges: Map<InputSite, number>,
): Promise<Map<InputSite, Float64Array>> {
  const acc = new Map(which.map((s) => [s, new Float64Array(width(s) ** 2)] as const));
  const mine = rangeSites.filter((s) => which.includes(s));
  let n = 0;
  for (const dir of dirs) {
    const p = await readPartial(dir, which, mine);
    n += p.tokens;
    for (const [s, h] of acc) {
      const part = p.xtx.get(s) as Float64Array;
      if (part.length !== h.length) throw new Error(`${join(dir, HESSIAN_FILE)}: xtx.${s} has ${part.length} values, expected ${h.length}`);
      addInto(h, part);
    }
    for (const [s, m] of p.ranges) ranges.set(s, Math.max(ranges.get(s) ?? 0, m));
  }
  if (n !== tokens) throw new Error(`the ${dirs.length} Hessian shards hold ${n} calibration tokens, the layer's inputs ${tokens}`);
  for (const h of acc.values()) for (let i = 0; i < h.length; i++) h[i] = ((h[i] as number) * 2) / tokens;
  return acc;
}

/**
 * windows [start, end) of shard `shard` of `shards` over `n` windows run in batches of `batch` windows (one
 * onnxruntime call each: activations.ts layerBatch): contiguous, disjoint, whole batches counted from window 0
 * (shard sizes differ by at most one batch; a shard may hold none when there are fewer batches than shards), so
 * a shard's float32 per-batch sums are exactly those of one pass over every window, and only the float64
 * additions of the batches' sums differ in order
 */
export function shardWindows(n: number, shard: number, shards: number, batch = 1): [number, number] {
  const batches = Math.ceil(n / batch);
  const edge = (s: number): number => Math.min(n, Math.floor((s * batches) / shards) * batch);
  return [edge(shard), edge(shard + 1)];
}
