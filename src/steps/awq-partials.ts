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
import { writeSafetensors } from '../formats/safetensors.js';
import { tensor, type Tensor } from '../tensor.js';
import { AwqError } from '../algo/awq.js';
import { addInto, forEachShard } from './shard-files.js';

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
  await forEachShard(dirs, LOSSES_FILE, 'awq loss shards', lossError, async (shard) => {
    const part = await shard.float64(kind, 'the shard scored the mapping another way');
    if (kind === 'sse' && shard.file.metadata['scales'] !== digest) throw lossError(`${shard.path}: the shard scored other candidate scales than the reduce computes (digest ${shard.file.metadata['scales'] ?? 'none'}, expected ${digest})`);
    if (part.length !== length) throw lossError(`${shard.path}: ${kind} has ${part.length} values, expected ${length}`);
    addInto(sums, part);
    tokens += (await shard.float64('tokens', 'the shard must record its token count'))[0] as number;
  });
  return { sums, tokens };
}
