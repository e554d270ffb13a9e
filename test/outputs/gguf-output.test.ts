// The gguf output on the synthetic example model (no ../shared, no llama.cpp): a recipe with rtn GGUF_Q4_K
// writes <path>/model.gguf whose Linears are Q4_K where 256 divides their rows and unquantized where no block
// fits (down_proj: 688 columns); every packed block is the layer state's codes and stored qparams (nothing
// rounded twice); the file's own perplexity is the fake-quantized model's; `eval` opens the directory. AutoRound
// with GGUF_Q4_0 packs its learned codes and float16 scales the same way. A W4A16 recipe is requantized to Q4_0
// at its own scales (quant/gguf-requantize.ts): the file scores as the fake-quantized model.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { GgufFile } from '../../src/formats/gguf/read.js';
import { llamaTensorName, permuteRows, permutedHeads } from '../../src/formats/gguf/llama.js';
import { GgufSource } from '../../src/model/gguf-source.js';
import { Runtime } from '../../src/ort/session.js';
import { openModel } from '../../src/outputs/open.js';
import type { GgufBlockTypeName } from '../../src/quant/gguf-quantize.js';
import { packGgufWeight } from '../../src/quant/gguf-weight.js';
import { readLayerState } from '../../src/steps/layer-state.js';
import { perplexities, runRecipe, type RecipeRun } from '../e2e/run-recipe.js';

/** a recipe on the example model with `lines` (stages, optional calibration) and the gguf output, run; its output directory */
async function ggufRun(lines: string): Promise<{ run: RecipeRun; out: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'qf-gguf-out-'));
  const out = join(dir, 'out');
  writeFileSync(
    join(dir, 'recipe.yaml'),
    `quantforge: 1
model: { example: tiny, seed: 0 }
${lines}
evaluate:
  perplexity: { dataset: "model:eval.txt", seq_len: 128, max_windows: 4 }
outputs:
  - { format: gguf, path: ${out} }
`,
  );
  return { run: await runRecipe(join(dir, 'recipe.yaml')), out };
}

/**
 * every Linear of `layer` is `type` blocks packed from step `step`'s layer state (codes and stored qparams), and
 * llama.cpp's dequantization of the file is the state's forward weight; down_proj (688 columns: no block fits)
 * stays unquantized
 */
async function expectPackedLayer(run: RecipeRun, out: string, step: string, layer: number, type: GgufBlockTypeName): Promise<void> {
  const path = join(out, 'model.gguf');
  const file = await GgufFile.open(path);
  const source = await GgufSource.open(path);
  try {
    const state = await readLayerState(run.artifacts.get(step)!, layer);
    let packed = 0;
    for (const local of ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']) {
      const hf = `model.layers.${layer}.${local}.weight`;
      const info = file.info(llamaTensorName(hf)!);
      const q = state.quant[local];
      if (local === 'mlp.down_proj') {
        expect(q).toBeUndefined();
        expect(info.type.name).toBe('F32');
        continue;
      }
      expect(info.type.name, local).toBe(type);
      const [rows, cols] = [info.shape[0]!, info.shape[1]!];
      let expected = packGgufWeight(type, q!.codes.data as Int8Array, q!.gguf!.data as Int16Array, rows, cols);
      const heads = permutedHeads(hf, source.config);
      if (heads !== undefined) expected = permuteRows(expected, rows, heads);
      expect(await file.bytes(llamaTensorName(hf)!), local).toEqual(expected);
      expect((await source.tensor(hf)).data, local).toEqual(state.tensors[`${local}.weight`]!.data);
      packed++;
    }
    expect(packed).toBe(6);
  } finally {
    await file.close();
    await source.close();
  }
}

test('rtn GGUF_Q4_K through a recipe: Q4_K blocks packed from the layer states, the file scores as the fake-quantized model', async () => {
  const { run, out } = await ggufRun('stages:\n  - { kind: rtn, scheme: GGUF_Q4_K, targets: [Linear], ignore: [lm_head] }');
  const ppl = perplexities(run);
  expect(Math.abs(ppl.gguf! - ppl.quantized) / ppl.quantized).toBeLessThan(1e-6);
  await expectPackedLayer(run, out, 'stage1.rtn/layer.1', 1, 'Q4_K');
  const rt = new Runtime({ device: 'cpu' });
  const model = await openModel(rt, out);
  expect(model.format).toBe('gguf');
  await model.close();
  await rt.close();
});

test('autoround GGUF_Q4_0 through a recipe: the file holds the learned blocks and scores as the fake-quantized model', async () => {
  const { run, out } = await ggufRun(
    'calibration: { dataset: "model:calib.txt", samples: 4, seq_len: 64 }\nstages:\n  - { kind: autoround, scheme: GGUF_Q4_0, targets: [Linear], ignore: [lm_head], iters: 4, batch_size: 4 }',
  );
  const ppl = perplexities(run);
  expect(Math.abs(ppl.gguf! - ppl.quantized) / ppl.quantized).toBeLessThan(1e-6);
  await expectPackedLayer(run, out, 'stage1.autoround/layer.1', 1, 'Q4_0');
});

test('W4A16 through the gguf output: requantized to Q4_0 at its own scales, the file scores as the fake-quantized model to within the float16 scale rounding', async () => {
  const { run, out } = await ggufRun('stages:\n  - { kind: rtn, scheme: W4A16, targets: [Linear], ignore: [lm_head] }');
  const ppl = perplexities(run);
  // measured 1.6e-4 relative (the float16 rounding of the group scales)
  expect(Math.abs(ppl.gguf! - ppl.quantized) / ppl.quantized).toBeLessThan(1e-3);
  const exported = run.results.get('export-gguf/gguf') as { requantized: Record<string, { type: string; weight_error: number }> };
  const requantized = Object.entries(exported.requantized);
  expect(requantized.length).toBe(4 * 6); // every Linear but down_proj (688 columns: no block of 32 fits whole rows)
  for (const [name, r] of requantized) {
    expect(r.type, name).toBe('Q4_0');
    expect(r.weight_error, name).toBeLessThan(1e-6);
  }
  const file = await GgufFile.open(join(out, 'model.gguf'));
  try {
    expect(file.info(llamaTensorName('model.layers.0.self_attn.q_proj.weight')!).type.name).toBe('Q4_0');
    expect(file.info(llamaTensorName('model.layers.0.mlp.down_proj.weight')!).type.name).toBe('F32');
  } finally {
    await file.close();
  }
});
