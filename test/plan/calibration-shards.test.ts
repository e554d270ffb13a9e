// parallel.calibration_shards: 1 plans exactly as a recipe without the key (same steps, same keys); K > 1 adds
// K gptq-hessian steps per GPTQ layer over the layer's chain inputs, which its gptq step takes as `partials`,
// and K capture-shard steps per SmoothQuant/AWQ capture, which the capture step reduces.

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
      const propagates = (steps: readonly { kind: string }[]): number => steps.filter((s) => s.kind === 'propagate').length;
      expect(propagates(four.plan.steps) - propagates(plain.plan.steps)).toBe(5);
      expect(four.plan.steps.length).toBe(plain.plan.steps.length + 4 * 6 + gptqShards + 5);
    });
  }
});
