// Mapping resolution with `ignore` (stages/mappings.ts): an ignored balance layer stays in its mapping, because
// the smooth op's output is divided by the scales and every Linear reading it must absorb them; a mapping whose
// smooth layer is ignored is left out (as llm-compressor resolves them). The smoothing step's params carry the
// mappings, so the plan shows what will be folded.

import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { prepare } from '../../src/exec/prepare.js';
import type { Mapping } from '../../src/model/arch.js';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const AWQ = 'recipes/awq-w4a16-asym.yaml';
const SQ = 'recipes/smoothquant-w8a8.yaml';
let dir = '';

/** a shipped recipe with `edit` applied (it must change the text, unless `edit` is undefined); the mappings of each layer's `kind` step */
async function mappingsOf(recipe: string, kind: string, name: string, edit?: (text: string) => string): Promise<Mapping[][]> {
  const path = join(repo, recipe);
  const text = readFileSync(path, 'utf8')
    .replace(/(\.\.\/\.\.\/shared\/[^\s,}]+)/g, (p) => resolve(dirname(path), p))
    .replace(/path: (\S+)/g, (_, p: string) => `path: ${join(dir, p)}`);
  const edited = edit ? edit(text) : text;
  if (edit) expect(edited).not.toBe(text);
  await mkdir(join(dir, name));
  const file = join(dir, name, 'recipe.yaml');
  await writeFile(file, edited);
  const p = await prepare(file, [], join(dir, 'cache'), 'cpu');
  if (!p.ok) throw new Error(p.diagnostics.map((d) => d.message).join('; '));
  const steps = p.value.variants[0]!.plan.steps.filter((s) => s.kind === kind);
  expect(steps.length).toBe(6);
  return steps.map((s) => (s.params as { mappings: Mapping[] }).mappings);
}

const awqIgnore = (ignore: string[]) => (t: string) => t.replace('ignore: [lm_head]', `ignore: ${JSON.stringify(ignore)}`);
const sqIgnore = (ignore: string[]) => (t: string) => t.replace('smoothing_strength: 0.8', `smoothing_strength: 0.8\n    ignore: ${JSON.stringify(ignore)}`);
const mlp = (layer: Mapping[]): Mapping | undefined => layer.find((m) => m.smooth === 'post_attention_layernorm');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qf-mappings-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('smoothing mappings under ignore', () => {
  test('awq: an ignored k_proj still absorbs the input_layernorm scales; a mapping whose smooth layer (up_proj) is ignored is left out', async () => {
    const plain = await mappingsOf(AWQ, 'awq', 'awq-plain');
    expect(plain[0]![0]).toEqual({ smooth: 'input_layernorm', balance: ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'] });
    expect(await mappingsOf(AWQ, 'awq', 'awq-k', awqIgnore(['lm_head', 're:.*k_proj$']))).toEqual(plain);
    const noUp = await mappingsOf(AWQ, 'awq', 'awq-up', awqIgnore(['lm_head', 're:.*up_proj$']));
    for (const [l, layer] of noUp.entries()) {
      expect(plain[l]!.find((m) => m.smooth === 'mlp.up_proj')!.balance).toEqual(['mlp.down_proj']);
      expect(layer).toEqual(plain[l]!.filter((m) => m.smooth !== 'mlp.up_proj'));
      expect(mlp(layer)!.balance).toEqual(['mlp.gate_proj', 'mlp.up_proj']);
    }
  });

  test('smoothquant: an ignored up_proj still absorbs the post_attention_layernorm scales; an ignored norm smooths nothing', async () => {
    const plain = await mappingsOf(SQ, 'smoothquant', 'sq-plain');
    for (const layer of plain) expect(mlp(layer)!.balance).toEqual(['mlp.gate_proj', 'mlp.up_proj']);
    expect(await mappingsOf(SQ, 'smoothquant', 'sq-up', sqIgnore(['re:.*up_proj$']))).toEqual(plain);
    const noNorm = await mappingsOf(SQ, 'smoothquant', 'sq-norm', sqIgnore(['re:.*post_attention_layernorm$']));
    for (const [l, layer] of noNorm.entries()) {
      expect(mlp(layer)).toBeUndefined();
      expect(layer).toEqual(plain[l]!.filter((m) => m.smooth !== 'post_attention_layernorm'));
    }
  });
});
