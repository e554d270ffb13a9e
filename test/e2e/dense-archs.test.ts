// Mistral, Qwen2 (q/k/v biases, tied embeddings) and Llama with llama3 rope scaling end to end, each stored as
// bf16 and as fp16 in two safetensors shards with an index (generated, random weights): GPTQ W4A16 and
// SmoothQuant + W8A8 run through the compute worker thread `quantforge run` uses, both outputs are written, the
// compressed-tensors checkpoint reloads to the fake-quant perplexity, and @huggingface/transformers generates
// the same greedy tokens from the ONNX export as quantforge does.

import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { WorkerRunner } from '../../src/exec/runner.js';
import { SafetensorsFile } from '../../src/formats/safetensors.js';
import { openModel } from '../../src/outputs/open.js';
import { Runtime } from '../../src/ort/session.js';
import { readIds } from '../../src/steps/activations.js';
import { DENSE_MODELS, writeArchModel, type ArchDtype } from '../fixtures/arch-models.js';
import { greedyBoth } from './interop.js';
import { perplexities, runRecipe } from './run-recipe.js';

const rt = new Runtime({ device: 'cpu' });
const runner = new WorkerRunner({ device: 'cpu', threads: 2 });
afterAll(async () => {
  await runner.close();
  await rt.close();
  for (const dir of models.values()) await rm(await dir, { recursive: true, force: true });
});

const RECIPES = {
  'gptq W4A16': ['{ kind: gptq, scheme: W4A16, targets: [Linear], ignore: [lm_head] }'],
  'smoothquant + W8A8': ['{ kind: smoothquant, smoothing_strength: 0.8 }', '{ kind: gptq, scheme: W8A8, targets: [Linear], ignore: [lm_head] }'],
} as const;
const DTYPES: readonly ArchDtype[] = ['bf16', 'f16'];
/** scales are rounded to the stored dtype before the codes: two onnxruntime graphs' float noise is what is left */
const RELOAD_TOLERANCE = 1e-6;

/** one generated model per (arch, dtype), shared by both recipes */
const models = new Map<string, Promise<string>>();
function modelDir(arch: (typeof DENSE_MODELS)[number], dtype: ArchDtype): Promise<string> {
  const key = `${arch}-${dtype}`;
  let dir = models.get(key);
  if (!dir) {
    dir = mkdtemp(join(tmpdir(), `qf-dense-${key}-`)).then(async (d) => {
      await writeArchModel(join(d, 'model'), arch, 0, dtype, 2);
      return d;
    });
    models.set(key, dir);
  }
  return dir;
}

async function writeRecipe(dir: string, name: string, stages: readonly string[]): Promise<string> {
  const slug = name.replace(/\W+/g, '-');
  const text = `quantforge: 1
model: ./model
calibration: { dataset: "model:calib.txt", samples: 8, seq_len: 32 }
stages:
${stages.map((s) => `  - ${s}`).join('\n')}
evaluate:
  perplexity: { dataset: "model:eval.txt", seq_len: 32, max_windows: 8 }
  kl: false
outputs:
  - { format: compressed-tensors, path: ./${slug}-ct }
  - { format: onnx, path: ./${slug}-onnx, accuracy_level: 0 }
`;
  const path = join(dir, `${slug}.yaml`);
  await writeFile(path, text);
  return path;
}

describe('Mistral, Qwen2 and Llama (llama3 rope) from sharded bf16 and fp16 checkpoints', () => {
  for (const arch of DENSE_MODELS) {
    for (const dtype of DTYPES) {
      for (const [name, stages] of Object.entries(RECIPES)) {
        test(`${arch} ${dtype}, ${name}: both outputs written, the checkpoint reloads to the fake-quant perplexity, transformers.js generates quantforge's tokens`, async () => {
          const dir = await modelDir(arch, dtype);
          const files = (await readdir(join(dir, 'model'))).filter((f) => f.includes('.safetensors')).sort();
          expect(files).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json']);
          const run = await runRecipe(await writeRecipe(dir, name, stages), [], undefined, runner);
          const ppl = perplexities(run);
          const slug = name.replace(/\W+/g, '-');
          const model = await openModel(rt, join(dir, `${slug}-ct`));
          let reloaded: number;
          try {
            expect(model.format).toBe('compressed-tensors');
            reloaded = (await model.perplexity(await readIds(run.artifacts.get('tokenize/evaluation')!))).perplexity;
          } finally {
            await model.close();
          }
          console.log(`${arch} ${dtype} ${name}: fp ${ppl.fp.toFixed(4)} quantized ${ppl.quantized.toFixed(4)} checkpoint ${reloaded.toFixed(4)} onnx ${ppl.onnx!.toFixed(4)}`);
          expect(Number.isFinite(ppl.quantized)).toBe(true);
          expect(ppl.quantized).not.toBe(ppl.fp);
          expect(Math.abs(reloaded - ppl.quantized) / ppl.quantized).toBeLessThan(RELOAD_TOLERANCE);
          expect(Math.abs(ppl.onnx! - ppl.quantized) / ppl.quantized).toBeLessThan(5e-3);

          const ct = JSON.parse(await readFile(join(dir, `${slug}-ct`, 'config.json'), 'utf8')) as { torch_dtype: string; tie_word_embeddings: boolean; quantization_config: { format: string } };
          expect(ct.quantization_config.format).toBe(name.startsWith('gptq') ? 'pack-quantized' : 'int-quantized');
          expect(ct.torch_dtype).toBe(dtype === 'bf16' ? 'bfloat16' : 'float16');
          // tied embeddings (Qwen2): no lm_head tensor is written, the output projection is the embedding
          const names = await tensorNames(join(dir, `${slug}-ct`));
          expect(names.includes('lm_head.weight')).toBe(!ct.tie_word_embeddings);
          if (arch === 'qwen2') expect(names).toContain('model.layers.0.self_attn.q_proj.bias');

          const { ours, transformers } = await greedyBoth(join(dir, `${slug}-onnx`), 'the cat saw the dog', 12);
          expect(transformers).toEqual(ours);
        });
      }
    }
  }
});

async function tensorNames(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const f of (await readdir(dir)).filter((n) => n.endsWith('.safetensors'))) {
    const s = await SafetensorsFile.open(join(dir, f));
    try {
      out.push(...s.names());
    } finally {
      await s.close();
    }
  }
  return out;
}
