// AutoRound with a GGUF scheme through a recipe on the synthetic example model, written by the gguf output:
// every Q4_0 block in the file is the layer state's learned codes and float16 scale, packed as they are; the
// file's dequantization is the weight the block was trained and evaluated with, so the file's perplexity is
// the fake-quantized model's.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { GgufFile } from '../../src/formats/gguf/read.js';
import { llamaTensorName, permuteRows, permutedHeads } from '../../src/formats/gguf/llama.js';
import { GgufSource } from '../../src/model/gguf-source.js';
import { packGgufWeight } from '../../src/quant/gguf-weight.js';
import { readLayerState } from '../../src/steps/layer-state.js';
import { runRecipe } from '../e2e/run-recipe.js';

test('autoround GGUF_Q4_0 through a recipe: the file holds the learned blocks and scores as the fake-quantized model', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qf-gguf-autoround-'));
  const out = join(dir, 'out');
  writeFileSync(
    join(dir, 'recipe.yaml'),
    `quantforge: 1
model: { example: tiny, seed: 0 }
calibration: { dataset: "model:calib.txt", samples: 4, seq_len: 64 }
stages:
  - { kind: autoround, scheme: GGUF_Q4_0, targets: [Linear], ignore: [lm_head], iters: 4, batch_size: 4 }
evaluate:
  perplexity: { dataset: "model:eval.txt", seq_len: 128, max_windows: 4 }
outputs:
  - { format: gguf, path: ${out} }
`,
  );
  const run = await runRecipe(join(dir, 'recipe.yaml'));
  const ppl = (run.summary.metrics as { perplexity: { quantized: number; gguf: number } }).perplexity;
  expect(Math.abs(ppl.gguf - ppl.quantized) / ppl.quantized).toBeLessThan(1e-6);

  const path = join(out, 'model.gguf');
  const file = await GgufFile.open(path);
  const source = await GgufSource.open(path);
  try {
    const layer = 1;
    const state = await readLayerState(run.artifacts.get(`stage1.autoround/layer.${layer}`)!, layer);
    let packed = 0;
    for (const local of ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']) {
      const hf = `model.layers.${layer}.${local}.weight`;
      const info = file.info(llamaTensorName(hf)!);
      const q = state.quant[local];
      if (local === 'mlp.down_proj') {
        // 688 columns: no Q4_0 block fits, the weight stays unquantized
        expect(q).toBeUndefined();
        expect(info.type.name).toBe('F32');
        continue;
      }
      expect(info.type.name, local).toBe('Q4_0');
      const [rows, cols] = [info.shape[0]!, info.shape[1]!];
      let expected = packGgufWeight('Q4_0', q!.codes.data as Int8Array, q!.gguf!.data as Int16Array, rows, cols);
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
});
