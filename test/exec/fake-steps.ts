// Counting fake steps for build-engine tests: the real planner and executor, with step implementations that
// only record their invocation and write a small artifact derived from their inputs (so outputs are
// deterministic and depend on everything upstream).

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Json } from '../../src/cache/key.js';
import { writeSafetensors } from '../../src/formats/safetensors.js';
import { LLAMA_FAMILY } from '../../src/model/arch.js';
import { parseModelConfig } from '../../src/model/config.js';
import type { StepContext, StepImpl, StepInputDir } from '../../src/steps/types.js';
import { stepVersions } from '../../src/exec/step-impls.js';
import { tensor } from '../../src/tensor.js';

/** a model directory the planner accepts: config.json with `layers` layers and a weights file with every tensor */
export async function makeFakeModel(dir: string, layers: number): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const raw = { model_type: 'llama', hidden_size: 8, intermediate_size: 16, num_hidden_layers: layers, num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 16, max_position_embeddings: 64, tie_word_embeddings: true };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(raw));
  const cfg = parseModelConfig(raw);
  // shaped as config.json implies: the planner checks the headers against it
  const shapes: [string, number[]][] = [[LLAMA_FAMILY.embedding, [cfg.vocabSize, cfg.hiddenSize]], [LLAMA_FAMILY.finalNorm, [cfg.hiddenSize]]];
  for (let l = 0; l < layers; l++) {
    const p = LLAMA_FAMILY.layerPrefix(l);
    const spec = LLAMA_FAMILY.layer(cfg, l);
    for (const n of spec.norms) shapes.push([`${p}${n.local}`, [n.size]]);
    for (const lin of spec.linears) shapes.push([`${p}${lin.local}.weight`, [lin.outFeatures, lin.inFeatures]]);
  }
  await writeSafetensors(join(dir, 'model.safetensors'), shapes.map(([n, dims]) => [n, tensor('float32', dims, new Float32Array(dims.reduce((a, b) => a * b, 1)).fill(1))] as const));
  writeFileSync(join(dir, 'tokenizer.json'), '{}');
  writeFileSync(join(dir, 'calib.txt'), 'calibration text\n');
  writeFileSync(join(dir, 'eval.txt'), 'evaluation text\n');
}

function inputsOf(ctx: StepContext<unknown>): StepInputDir[] {
  return Object.values(ctx.inputs).flatMap((v) => (Array.isArray(v) ? v : [v]));
}

/** fake implementations of every real step kind; `calls` counts invocations by step id */
export function fakeImpls(calls: Map<string, number>, options: { delayMs?: number; onRun?: (id: string) => void } = {}): Map<string, StepImpl> {
  const impls = new Map<string, StepImpl>();
  for (const [kind, version] of stepVersions) {
    impls.set(kind, {
      kind,
      async run(ctx: StepContext<Json>): Promise<Json> {
        calls.set(ctx.id, (calls.get(ctx.id) ?? 0) + 1);
        options.onRun?.(ctx.id);
        if (options.delayMs) await new Promise((r) => setTimeout(r, options.delayMs));
        const upstream = inputsOf(ctx).map((i) => readFileSync(join(i.dir, 'out.txt'), 'utf8'));
        const text = `${kind}(${JSON.stringify(ctx.params)})[${upstream.join(',')}]`;
        writeFileSync(join(ctx.outDir, 'out.txt'), `${text.length}:${text.slice(0, 200)}`);
        if (kind === 'evaluate') return { perplexity: 10 + text.length / 1000 };
        return { kind };
      },
    });
  }
  return impls;
}

/** a recipe over the fake model: rtn on every layer (or a custom stage list), evaluation, one output */
export function fakeRecipe(stages: string, extra = ''): string {
  return `quantforge: 1
model: ./model
calibration: { dataset: "model:calib.txt", samples: 1, seq_len: 8 }
stages:
${stages}
evaluate:
  perplexity: { dataset: "model:eval.txt", seq_len: 8 }
outputs:
  - { format: compressed-tensors, path: ./out/model }
${extra}`;
}
