// Data-parallel SmoothQuant and AWQ calibration through the real CLI on the tiny example model (16 windows):
// calibration_shards 4 against 1, in one store. SmoothQuant + W8A8 writes the same checkpoint byte for byte
// (max of maxima is the max); AWQ, whose candidate losses are awq-loss shard steps per mapping, picks the same
// scale of the grid for every mapping and writes the same checkpoint. The sharded runs take the windows and the model from the store the 1-shard run filled
// (its chain of layer inputs after layer 0 came from its captures' own forward, so theirs is propagate steps).

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { fingerprint, fingerprintDiff, runCli, type CliRun, type RunEvent, type Workspace } from '../reliability/workspace.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qf-smoothing-shards-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const STAGES = {
  smoothquant: '  - { kind: smoothquant, smoothing_strength: 0.8 }\n  - { kind: rtn, scheme: W8A8, targets: [Linear], ignore: [lm_head] }\n',
  awq: '  - { kind: awq, scheme: W4A16_ASYM, n_grid: 10, targets: [Linear], ignore: [lm_head] }\n',
};

/** the recipe in a directory of its own, with `shards`, built into the shared store */
async function build(stage: keyof typeof STAGES, shards: number): Promise<{ run: CliRun; out: Map<string, string> }> {
  const ws: Workspace = { dir: join(dir, `${stage}-${shards}`), recipe: '', cache: join(dir, 'store') };
  await mkdir(ws.dir, { recursive: true });
  const recipe = [
    'quantforge: 1',
    'model: { example: tiny, seed: 0 }',
    'calibration: { dataset: "model:calib.txt", samples: 16, seq_len: 128 }',
    `parallel: { calibration_shards: ${shards} }`,
    'stages:',
    STAGES[stage],
    'evaluate:',
    '  perplexity: { dataset: "model:eval.txt", seq_len: 128, max_windows: 4 }',
    'outputs:',
    '  - { format: compressed-tensors, path: out/ct }',
    '',
  ].join('\n');
  await writeFile(join(ws.dir, 'recipe.yaml'), recipe);
  const run = await runCli(ws, ['run', 'recipe.yaml', '--json', '--device', 'cpu', '--cache-dir', ws.cache]);
  if (run.code !== 0) throw new Error(`${stage} with ${shards} shards failed (${run.code}): ${run.stderr}${JSON.stringify(run.events.slice(-3))}`);
  // the checkpoint's tensors and config (its copy of the recipe and lock file name the shards)
  const out = [...(await fingerprint(join(ws.dir, 'out/ct')))!].filter(([f]) => f !== 'recipe.yaml' && f !== 'quantforge.lock.json');
  expect(out.some(([f]) => f.endsWith('.safetensors'))).toBe(true);
  return { run, out: new Map(out) };
}

const ran = (r: CliRun, kind: string): RunEvent[] => r.events.filter((e) => e.event === 'step-done' && e.result === 'ran' && e['kind'] === kind);
const perplexity = (r: CliRun): number => (r.events.find((e) => e.event === 'summary')!['metrics'] as { perplexity: { quantized: number } }).perplexity.quantized;

describe('calibration_shards with smoothing stages', () => {
  test('SmoothQuant + W8A8: 4 shards write the 1-shard checkpoint byte for byte, reusing the stored windows and model', async () => {
    const one = await build('smoothquant', 1);
    const four = await build('smoothquant', 4);
    expect(fingerprintDiff(one.out, four.out)).toEqual([]);
    const layers = ran(one.run, 'capture').length;
    expect(layers).toBeGreaterThan(1);
    expect(ran(four.run, 'capture-shard').length).toBe(4 * layers);
    expect(ran(four.run, 'capture').length).toBe(layers);
    // the windows and the model come from the store (the smoothing steps rerun: their key holds their input's,
    // the reduce's, whose inputs differ, not the statistics' bytes); the 1-shard run's captures wrote the chain
    // of layer inputs from their own forward (next_hidden), which the reduces have not, so the chain's links
    // after layer 0 are propagate steps here
    for (const kind of ['example-model', 'tokenize', 'embed']) expect(ran(four.run, kind), kind).toEqual([]);
    expect(ran(four.run, 'propagate').length).toBe(layers - 1);
    expect(ran(four.run, 'smoothquant').length).toBe(layers);
    expect(perplexity(four.run)).toBe(perplexity(one.run));
  });

  test('AWQ W4A16_ASYM: 4 shards choose the same grid scale for every mapping, the same checkpoint and perplexity', async () => {
    const one = await build('awq', 1);
    const four = await build('awq', 4);
    const layers = ran(one.run, 'capture').length;
    expect(ran(four.run, 'capture-shard').length).toBe(4 * layers);
    // every layer's last awq step lists every mapping's choice (each mapping's step passes the earlier ones on)
    const choices = (r: CliRun): unknown[] =>
      r.events
        .filter((e) => e.event === 'step-done' && e['kind'] === 'awq' && /layer\.\d+$/.test(String(e.id)))
        .flatMap((e) => ((e['metrics'] as { mappings: { smooth: string; ratio?: number; duo_scaling?: boolean }[] }).mappings ?? []).map((m) => [e.id, m.smooth, m.ratio, m.duo_scaling]));
    const mappings = choices(one.run).length;
    expect(mappings).toBeGreaterThan(layers);
    expect(choices(four.run)).toEqual(choices(one.run));
    // the search's losses: 4 awq-loss steps per layer and mapping, an awq step per mapping
    expect(ran(four.run, 'awq-loss').length).toBe(4 * mappings);
    expect(ran(four.run, 'awq').length).toBe(mappings);
    const [a, b] = [perplexity(one.run), perplexity(four.run)];
    console.log(`AWQ perplexity 1 shard ${a}, 4 shards ${b}; checkpoint files that differ: ${fingerprintDiff(one.out, four.out).length}`);
    // the shards sum the one-pass run's float32 chunks: the same choices fold the same scales
    expect(fingerprintDiff(one.out, four.out)).toEqual([]);
    expect(b).toBe(a);
  });
});
