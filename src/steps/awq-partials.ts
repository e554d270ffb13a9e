// Partial candidate losses of data-parallel AWQ (recipe `parallel.calibration_shards`): an awq-loss step runs
// one mapping's search over a disjoint range of the calibration windows and stores, for a module parent
// (self-attention, MLP), each candidate's float64 sum of squared output errors, or, for a Linear parent, the
// float64 XᵀX of its input (the one-pass search scores Linear parents from the Gram matrix), with the token
// count and its window range. The mapping's awq step sums the shards in shard order (float64) and divides by
// the elements: the one-pass losses up to the order of the float64 additions.
//
//   losses.safetensors   sse float64 [candidates] | gram float64 [in, in]   tokens float64 [1]
//                        metadata windows "start,end,of", scales (sha256 of the candidate scales, with sse),
//                        skipped "true" (no balance layer of the mapping is quantized: nothing stored)

import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { SafetensorsFile, writeSafetensors } from '../formats/safetensors.js';
import { tensor, type Tensor } from '../tensor.js';
import { AwqError } from '../algo/awq.js';

export const LOSSES_FILE = 'losses.safetensors';

/** which sums a shard holds: per-candidate errors of a module parent, or a Linear parent's input Gram matrix */
export type LossSums = 'sse' | 'gram';

export interface LossPartial {
  /** undefined: the mapping searches nothing (no balance layer quantized) */
  sums?: { kind: LossSums; data: Float64Array; dims: number[] };
  tokens: number;
  /** the shard's windows [start, end) of `of` */
  windows: readonly [number, number, number];
  /** digest of the candidate scales the sse were computed with */
  scales?: string;
}

/** the digest that ties a shard's per-candidate sums to the scales the reduce recomputes */
export const scalesDigest = (scales: Float32Array): string => createHash('sha256').update(new Uint8Array(scales.buffer, scales.byteOffset, scales.byteLength)).digest('hex');

export async function writeLossPartial(dir: string, p: LossPartial): Promise<void> {
  const tensors: [string, Tensor][] = [['tokens', tensor('float64', [1], Float64Array.of(p.tokens))]];
  if (p.sums) tensors.unshift([p.sums.kind, tensor('float64', p.sums.dims, p.sums.data)]);
  const metadata: Record<string, string> = { windows: p.windows.join(',') };
  if (p.scales) metadata['scales'] = p.scales;
  if (!p.sums) metadata['skipped'] = 'true';
  await writeSafetensors(join(dir, LOSSES_FILE), tensors, metadata);
}

const lossError = (message: string): AwqError => new AwqError('awq-partials-mismatch', message);

/**
 * The shards' sums of `kind` (`length` values each) added in shard order, and their total token count. The
 * shards must cover the layer's windows exactly once, in order, and (sse) have scored the scales of `digest`.
 */
export async function sumLossPartials(dirs: readonly string[], kind: LossSums, length: number, digest: string): Promise<{ sums: Float64Array; tokens: number }> {
  const sums = new Float64Array(length);
  let tokens = 0;
  let next = 0;
  let of = -1;
  for (const dir of dirs) {
    const path = join(dir, LOSSES_FILE);
    const f = await SafetensorsFile.open(path);
    try {
      const windows = (f.metadata['windows'] ?? '').split(',').map(Number);
      const [start, end, total] = windows as [number, number, number];
      if (windows.length !== 3 || windows.some((w) => !Number.isInteger(w))) throw lossError(`${path}: metadata "windows" should be "start,end,of", found ${JSON.stringify(f.metadata['windows'])}`);
      if (start !== next || (of >= 0 && total !== of)) throw lossError(`the awq loss shards do not cover the calibration windows in order: ${path} holds windows [${start}, ${end}) of ${total}, expected ${next} next`);
      [next, of] = [end, total];
      if (!f.has(kind)) throw lossError(`${path} has no "${kind}" (has ${f.names().join(', ')}); the shard scored the mapping another way`);
      if (kind === 'sse' && f.metadata['scales'] !== digest) throw lossError(`${path}: the shard scored other candidate scales than the reduce computes (digest ${f.metadata['scales'] ?? 'none'}, expected ${digest})`);
      const part = (await f.read(kind)).data as Float64Array;
      if (part.length !== length) throw lossError(`${path}: ${kind} has ${part.length} values, expected ${length}`);
      for (let i = 0; i < length; i++) sums[i] = (sums[i] as number) + (part[i] as number);
      tokens += ((await f.read('tokens')).data as Float64Array)[0] as number;
    } finally {
      await f.close();
    }
  }
  if (next !== of) throw lossError(`the ${dirs.length} awq loss shards cover windows [0, ${next}) of ${of}`);
  return { sums, tokens };
}
