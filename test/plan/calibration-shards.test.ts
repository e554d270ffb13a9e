// parallel.calibration_shards: 1 plans exactly as a recipe without the key (same steps, same keys); K > 1 adds
// K gptq-hessian steps per GPTQ layer over the layer's chain inputs, which its gptq step takes as `partials`,
// K capture-shard steps per SmoothQuant/AWQ capture, which the capture step reduces, and per AWQ layer and
// mapping K awq-loss steps, which an awq step per mapping sums (the last mapping's is the layer's step).

import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { prepare, type Prepared } from '../../src/exec/prepare.js';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const RECIPES = { gptq: 'recipes/gptq-w4a16.yaml', smoothquant: 'recipes/smoothquant-w8a8.yaml', awq: 'recipes/awq-w4a16-asym.yaml' };
let dir = '';

/** recipes/gptq-w4a16.yaml (as recipe.yaml: the report's title is the file name) in a directory of its own, its relative paths made absolute, `extra` appended */
async function variant(name: string, extra: string, recipe: keyof typeof RECIPES = 'gptq'): Promise<string> {
  const RECIPE = join(repo, RECIPES[recipe]);
  const text = readFileSync(RECIPE, 'utf8').replace(/(\.\.\/\.\.\/shared\/[^\s,}]+)/g, (p) => resolve(dirname(RECIPE), p)).replace(/path: (\S+)/g, (_, p: string) => `path: ${join(dir, p)}`);
  await mkdir(join(dir, name));
  const file = join(dir, name, 'recipe.yaml');
  await writeFile(file, `${text}${extra}`);
  return file;
}

async function prepared(file: string): Promise<Prepared> {
  const p = await prepare(file, [], join(dir, 'cache'), 'cpu');
  if (!p.ok) throw new Error(p.diagnostics.map((d) => d.message).join('; '));
  return p.value;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qf-shards-plan-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('calibration_shards', () => {
  test('1 shard: the shipped gptq recipe plans the same steps under the same keys as without the key', async () => {
    const plain = await prepared(await variant('plain', ''));
    const one = await prepared(await variant('one', 'parallel: { calibration_shards: 1 }\n'));
    const [a, b] = [plain.variants[0]!, one.variants[0]!];
    expect(a.plan.steps.length).toBeGreaterThan(10);
    expect(b.plan.steps.map((s) => [s.id, s.kind, s.params, s.inputs])).toEqual(a.plan.steps.map((s) => [s.id, s.kind, s.params, s.inputs]));
    expect(Object.fromEntries(b.keys)).toEqual(Object.fromEntries(a.keys));
  });

  test('4 shards: each gptq layer reads 4 gptq-hessian steps over its own chain inputs; the keys of the rest are untouched', async () => {
    const plain = (await prepared(await variant('plain4', ''))).variants[0]!;
    const four = (await prepared(await variant('four', 'parallel: { calibration_shards: 4 }\n'))).variants[0]!;
    const byId = new Map(four.plan.steps.map((s) => [s.id, s]));
    const gptq = four.plan.steps.filter((s) => s.kind === 'gptq');
    expect(gptq.length).toBe(6);
    for (const [l, g] of gptq.entries()) {
      const partials = g.inputs['partials'] as string[];
      expect(partials).toEqual([0, 1, 2, 3].map((k) => `stage1.gptq/layer.${l}.shard.${k}`));
      for (const [k, id] of partials.entries()) {
        const shard = byId.get(id as never)!;
        expect(shard.kind).toBe('gptq-hessian');
        expect(shard.params).toEqual({ layer: l, sites: ['attn_in', 'o_in', 'mlp_in', 'down_in'], range_sites: [], shard: k, shards: 4 });
        expect(shard.inputs['hidden']).toBe(g.inputs['hidden']);
        expect(four.plan.steps.indexOf(shard)).toBeLessThan(four.plan.steps.indexOf(g));
      }
    }
    expect(four.plan.steps.length).toBe(plain.plan.steps.length + 4 * 6);
    // the calibration windows and the unquantized evaluation do not depend on the shards
    for (const id of ['tokenize/calibration', 'embed/calibration', 'evaluate/fp']) expect(four.keys.get(id as never), id).toBe(plain.keys.get(id as never));
    expect(four.keys.get('stage1.gptq/layer.0' as never)).not.toBe(plain.keys.get('stage1.gptq/layer.0' as never));
  });

  for (const [stage, statistic] of [['smoothquant', 'absmax'], ['awq', 'absmean']] as const) {
    test(`${stage}: 1 shard plans the same keys; 4 shards make each capture the reduce of 4 capture-shard steps over the chain`, async () => {
      const plain = (await prepared(await variant(`${stage}-plain`, '', stage))).variants[0]!;
      const one = (await prepared(await variant(`${stage}-one`, 'parallel: { calibration_shards: 1 }\n', stage))).variants[0]!;
      expect(Object.fromEntries(one.keys)).toEqual(Object.fromEntries(plain.keys));
      const four = (await prepared(await variant(`${stage}-four`, 'parallel: { calibration_shards: 4 }\n', stage))).variants[0]!;
      const byId = new Map(four.plan.steps.map((s) => [s.id, s]));
      const captures = four.plan.steps.filter((s) => s.kind === 'capture');
      expect(captures.length).toBe(6);
      for (const [l, c] of captures.entries()) {
        const before = plain.plan.steps.find((s) => s.id === c.id)!;
        // one shard: the capture's forward also writes the chain's next link (next_hidden); the reduce runs no
        // forward, so with K shards that link is a propagate step
        const { next_hidden: nextHidden, ...params } = before.params as { next_hidden?: boolean };
        expect(nextHidden).toBe(l + 1 < 6 ? true : undefined);
        expect(c.params).toEqual(params);
        expect(Object.keys(c.inputs)).toEqual(['partials']);
        const partials = c.inputs['partials'] as string[];
        expect(partials).toEqual([0, 1, 2, 3].map((k) => `stage1.${stage}/capture.${l}.shard.${k}`));
        for (const [k, id] of partials.entries()) {
          const shard = byId.get(id as never)!;
          expect(shard.kind).toBe('capture-shard');
          expect(shard.params).toEqual({ layer: l, statistic, modules: (before.params as { modules: string[] }).modules, shard: k, shards: 4 });
          if (l === 0) {
            // layer 0's shards read the embeddings, the 1-shard plan's step under its key
            expect(shard.inputs['hidden']).toBe(before.inputs['hidden']);
            expect(four.keys.get(shard.inputs['hidden'] as never)).toBe(plain.keys.get(before.inputs['hidden'] as never));
          } else {
            // later layers' shards read the one propagate step of the chain (the 1-shard plan's capture wrote it)
            expect(before.inputs['hidden']).toBe(`stage1.${stage}/capture.${l - 1}`);
            expect(byId.get(shard.inputs['hidden'] as never)!.kind).toBe('propagate');
            expect(partials.map((p) => byId.get(p as never)!.inputs['hidden'])).toEqual(Array(4).fill(shard.inputs['hidden']));
          }
        }
      }
      const gptqShards = stage === 'smoothquant' ? 4 * 6 : 0;
      // awq: per layer and mapping 4 awq-loss steps, and an awq step per mapping but the last (the layer's own)
      const mappings = plain.plan.steps.filter((s) => s.kind === 'awq').reduce((n, s) => n + (s.params as { mappings: unknown[] }).mappings.length, 0);
      const awqSteps = stage === 'awq' ? 4 * mappings + (mappings - 6) : 0;
      const propagates = (steps: readonly { kind: string }[]): number => steps.filter((s) => s.kind === 'propagate').length;
      expect(propagates(four.plan.steps) - propagates(plain.plan.steps)).toBe(5);
      expect(four.plan.steps.length).toBe(plain.plan.steps.length + 4 * 6 + gptqShards + awqSteps + 5);
    });
  }

  test('awq, 4 shards: per layer and mapping 4 awq-loss steps on the layer as the previous mapping left it, summed by one awq step each; the last is the layer state', async () => {
    const plain = (await prepared(await variant('awq-plain-search', '', 'awq'))).variants[0]!;
    const four = (await prepared(await variant('awq-four-search', 'parallel: { calibration_shards: 4 }\n', 'awq'))).variants[0]!;
    const byId = new Map(four.plan.steps.map((s) => [s.id as string, s]));
    const before = plain.plan.steps.filter((s) => s.kind === 'awq');
    expect(before.length).toBe(6);
    for (const [l, b] of before.entries()) {
      const { mappings, ...rest } = b.params as { mappings: unknown[] };
      expect(mappings.length).toBeGreaterThan(1);
      expect(Object.keys(b.inputs).sort()).toEqual(['hidden', 'stats']);
      const capture = `stage1.awq/capture.${l}`;
      // mapping m's awq step is …/layer.l.mapping.m, the last one the layer's own step under the one-pass id
      const reduces = mappings.map((_, m) => byId.get(m === mappings.length - 1 ? b.id : `stage1.awq/layer.${l}.mapping.${m}`)!);
      for (const [m, r] of reduces.entries()) {
        expect(r.kind).toBe('awq');
        expect(r.params).toEqual({ ...rest, mappings, mapping: m });
        expect(r.inputs['stats']).toBe(capture);
        expect(r.inputs['hidden']).toBeUndefined();
        // mapping 0 reads the layer as the stage found it (the base model: no state), mapping m the step of m − 1
        expect(r.inputs['state']).toBe(m === 0 ? undefined : reduces[m - 1]!.id);
        const partials = r.inputs['partials'] as string[];
        expect(partials).toEqual([0, 1, 2, 3].map((k) => `stage1.awq/layer.${l}.mapping.${m}.shard.${k}`));
        for (const [k, id] of partials.entries()) {
          const shard = byId.get(id)!;
          expect(shard.kind).toBe('awq-loss');
          expect(shard.params).toEqual({ ...rest, mappings, mapping: m, shard: k, shards: 4 });
          // the chain's activations the layer's capture shards read
          const hidden = byId.get(`${capture}.shard.0`)!.inputs['hidden'];
          expect(shard.inputs).toEqual({ hidden, stats: capture, ...(m === 0 ? {} : { state: reduces[m - 1]!.id }) });
          expect(four.plan.steps.indexOf(shard)).toBeLessThan(four.plan.steps.indexOf(r));
        }
      }
    }
    // the layer states later steps read are the last mappings' steps, under the one-pass ids
    const pack = (v: typeof four): unknown => v.plan.steps.find((s) => s.kind === 'pack')?.inputs['states'];
    expect(pack(four)).toEqual(pack(plain));
  });
});
