// Data-parallel GPTQ calibration through the job queue (test/queue/calibration-shards.test.ts and
// bench/queue-shards.ts): a workspace running GPTQ W4A16 (or another stage) on ../shared/models/wiki-llama-8m with few
// calibration windows, as recipe.yaml (one shard) and recipe-shards.yaml (parallel.calibration_shards K), and
// the per-layer Hessians the runs used, read back from their directory stores.

import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Digest } from '../../src/cache/key.js';
import { prepare } from '../../src/exec/prepare.js';
import { SafetensorsFile } from '../../src/formats/safetensors.js';
import { Runtime } from '../../src/ort/session.js';
import { gptqHessianStep } from '../../src/steps/gptq-hessian.js';
import { HESSIAN_FILE, sumHessianPartials } from '../../src/steps/hessian-partials.js';
import { sharedData, sharedModel } from '../e2e/shared.js';
import type { Workspace } from '../reliability/workspace.js';

export const SITES = ['attn_in', 'o_in', 'mlp_in', 'down_in'] as const;
/** wiki-llama-8m: hidden 288, intermediate 768 */
export const WIDTH: Record<string, number> = { attn_in: 288, o_in: 288, mlp_in: 288, down_in: 768 };
export const LAYERS = 6;

export const GPTQ_STAGE = '{ kind: gptq, scheme: W4A16, ignore: [lm_head] }';

/** `samples` calibration windows of `seqLen` tokens, `evalWindows` evaluation windows of 128 (0: no evaluation); recipe-shards.yaml has `shards` shards */
export async function shardsWorkspace(shards: number, samples = 8, evalWindows = 4, parent = tmpdir(), seqLen = 128, stage = GPTQ_STAGE): Promise<Workspace & { sharded: string }> {
  const dir = await mkdtemp(join(parent, 'qf-shards-'));
  const text = (extra: string): string =>
    [
      'quantforge: 1',
      `model: ${sharedModel('wiki-llama-8m')}`,
      `calibration: { dataset: ${sharedData('wiki-calib.txt')}, samples: ${samples}, seq_len: ${seqLen} }`,
      extra,
      'stages:',
      `  - ${stage}`,
      ...(evalWindows > 0 ? ['evaluate:', `  perplexity: { dataset: ${sharedData('wikitext-2-raw-test.txt')}, seq_len: 128, max_windows: ${evalWindows} }`] : []),
      '',
    ].join('\n');
  await writeFile(join(dir, 'recipe.yaml'), text(''));
  await writeFile(join(dir, 'recipe-shards.yaml'), text(`parallel: { calibration_shards: ${shards} }`));
  return { dir, recipe: join(dir, 'recipe.yaml'), sharded: join(dir, 'recipe-shards.yaml'), cache: join(dir, 'cache') };
}

/** step id → entry directory in the directory store `store`, for the plan of `recipe` */
export async function entryDirs(recipe: string, store: string): Promise<Map<string, string>> {
  const p = await prepare(recipe, [], store, 'cpu');
  if (!p.ok) throw new Error(p.diagnostics.map((d) => d.message).join('; '));
  const v = p.value.variants[0]!;
  return new Map(v.plan.steps.map((s) => [s.id as string, join(store, s.kind, v.keys.get(s.id) as Digest)]));
}

async function tokensOf(dir: string): Promise<number> {
  const f = await SafetensorsFile.open(join(dir, HESSIAN_FILE));
  try {
    return ((await f.read('tokens')).data as Float64Array)[0] as number;
  } finally {
    await f.close();
  }
}

/** H = 2·XᵀX / n per site of every layer, summed from the shard steps of a sharded run */
export async function shardedHessians(entries: ReadonlyMap<string, string>, shards: number): Promise<Map<string, Float64Array>[]> {
  const out: Map<string, Float64Array>[] = [];
  for (let l = 0; l < LAYERS; l++) {
    const dirs = Array.from({ length: shards }, (_, k) => entries.get(`stage1.gptq/layer.${l}.shard.${k}`) as string);
    let tokens = 0;
    for (const d of dirs) tokens += await tokensOf(d);
    out.push(await sumHessianPartials(dirs, SITES as never, (s) => WIDTH[s]!, tokens, [], new Map()));
  }
  return out;
}

/**
 * the Hessians a one-shard run's gptq steps captured: one gptq-hessian pass over all windows of each layer's
 * stored inputs (the embeddings, then the gptq step before it), the capture loop the gptq step runs
 */
export async function unshardedHessians(entries: ReadonlyMap<string, string>, scratch: string): Promise<Map<string, Float64Array>[]> {
  const rt = new Runtime({ device: 'cpu', threads: 1 });
  const out: Map<string, Float64Array>[] = [];
  try {
    for (let l = 0; l < LAYERS; l++) {
      const hidden = entries.get(l === 0 ? 'embed/calibration' : `stage1.gptq/layer.${l - 1}`) as string;
      const outDir = await mkdtemp(join(scratch, `hessian-${l}-`));
      await gptqHessianStep.run({
        id: `hessian.${l}`,
        params: { layer: l, sites: [...SITES], range_sites: [], shard: 0, shards: 1 },
        inputs: { hidden: { id: 'hidden', kind: 'gptq', dir: hidden, result: null } },
        files: {},
        modelDir: sharedModel('wiki-llama-8m'),
        outDir,
        runtime: rt,
        progress: () => {},
        warn: () => {},
        signal: new AbortController().signal,
      });
      out.push(await sumHessianPartials([outDir], SITES as never, (s) => WIDTH[s]!, await tokensOf(outDir), [], new Map()));
    }
  } finally {
    await rt.close();
  }
  return out;
}

/** ‖a − b‖ / ‖a‖ (Frobenius) */
export function relDiff(a: Float64Array, b: Float64Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += ((a[i] as number) - (b[i] as number)) ** 2;
    den += (a[i] as number) ** 2;
  }
  return Math.sqrt(num / den);
}
