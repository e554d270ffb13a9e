// GPTQ W4A16 and rtn FP8 end to end on generated Qwen3, Gemma 3, Mixtral and Qwen3-MoE checkpoints (bf16, HF names and
// configs): the compressed-tensors checkpoint reloads to the fake-quant perplexity, the ONNX export runs in
// quantforge and (for the types transformers.js 4.x knows: qwen3, gemma3_text, qwen3_moe) generates the same
// greedy tokens in @huggingface/transformers. In the MoE models the router of layer 1 never picks expert 3: the
// run finishes with finite scales for it and says which expert fell back to which rule; routers stay unquantized.

import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { SafetensorsFile } from '../../src/formats/safetensors.js';
import { fromBfloat16 } from '../../src/quant/half.js';
import { openModel } from '../../src/outputs/open.js';
import { Runtime } from '../../src/ort/session.js';
import { readIds } from '../../src/steps/activations.js';
import { ARCH_MODELS, UNROUTED, writeArchModel, type ArchModel } from '../fixtures/arch-models.js';
import { greedyBoth } from './interop.js';
import { perplexities, runRecipe } from './run-recipe.js';

const rt = new Runtime({ device: 'cpu' });
afterAll(() => rt.close());

/** transformers.js 4.x has no mixtral model class */
const TRANSFORMERS_JS: readonly ArchModel[] = ['qwen3', 'gemma3', 'qwen3_moe'];
const ROUTER: Partial<Record<ArchModel, string>> = { mixtral: 'block_sparse_moe.gate', qwen3_moe: 'mlp.gate' };
const EXPERT_DOWN: Partial<Record<ArchModel, string>> = { mixtral: 'block_sparse_moe.experts.3.w2', qwen3_moe: 'mlp.experts.3.down_proj' };

async function recipe(arch: ArchModel, dtype: 'bf16' | 'f32', stage = '{ kind: gptq, scheme: W4A16, targets: [Linear], ignore: [lm_head] }', onnx = true): Promise<{ path: string; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), `qf-e2e-${arch}-`));
  await writeArchModel(join(dir, 'model'), arch, 0, dtype);
  const text = `quantforge: 1
model: ./model
calibration: { dataset: "model:calib.txt", samples: 16, seq_len: 32 }
stages:
  - ${stage}
evaluate:
  perplexity: { dataset: "model:eval.txt", seq_len: 32 }
  kl: false
outputs:
  - { format: compressed-tensors, path: ./out-ct }
${onnx ? '  - { format: onnx, path: ./out-onnx, accuracy_level: 0 }\n' : ''}`;
  await writeFile(join(dir, 'recipe.yaml'), text);
  return { path: join(dir, 'recipe.yaml'), dir };
}

async function tensorOf(dir: string, name: string): Promise<Float32Array> {
  const f = await SafetensorsFile.open(join(dir, 'model.safetensors'));
  try {
    const t = await f.read(name);
    return t.dtype === 'bfloat16' ? fromBfloat16(t.data as Uint16Array) : (t.data as Float32Array);
  } finally {
    await f.close();
  }
}

/**
 * The checkpoint stores scales in the model dtype (DESIGN §2) and the quantizers round them to it before the
 * codes (qparams.ts), so the reloaded checkpoint computes the fake-quant model's weights exactly, in every dtype;
 * what is left is float noise between two onnxruntime graphs (relative 1e-6 of the perplexity).
 */
const CHECKPOINT_TOLERANCE = { f32: 1e-6, bf16: 1e-6 } as const;

async function checkpointPerplexity(dir: string, run: Awaited<ReturnType<typeof runRecipe>>): Promise<number> {
  const model = await openModel(rt, join(dir, 'out-ct'));
  try {
    expect(model.format).toBe('compressed-tensors');
    return (await model.perplexity(await readIds(run.artifacts.get('tokenize/evaluation')!))).perplexity;
  } finally {
    await model.close();
  }
}

describe('GPTQ W4A16 on float32 checkpoints of the newer architectures', () => {
  for (const arch of ARCH_MODELS) {
    test(`${arch}: the compressed-tensors checkpoint reloads to the fake-quant perplexity`, async () => {
      const { path, dir } = await recipe(arch, 'f32');
      const run = await runRecipe(path);
      const ppl = perplexities(run);
      const reloaded = await checkpointPerplexity(dir, run);
      expect(Math.abs(reloaded - ppl.quantized) / ppl.quantized).toBeLessThan(CHECKPOINT_TOLERANCE.f32);
    });
  }
});

describe('GPTQ W4A16 on bf16 checkpoints of the newer architectures', () => {
  for (const arch of ARCH_MODELS) {
    test(`${arch}: compressed-tensors reloads to the fake-quant perplexity; the ONNX export runs${TRANSFORMERS_JS.includes(arch) ? ' and transformers.js generates the same tokens' : ''}`, async () => {
      const { path, dir } = await recipe(arch, 'bf16');
      const run = await runRecipe(path);
      const ppl = perplexities(run);
      const reloaded = await checkpointPerplexity(dir, run);
      console.log(`${arch} gptq W4A16 (bf16): fp ${ppl.fp.toFixed(4)} quantized ${ppl.quantized.toFixed(4)} checkpoint ${reloaded.toFixed(4)} onnx ${ppl.onnx!.toFixed(4)}`);
      expect(Number.isFinite(ppl.quantized)).toBe(true);
      expect(ppl.quantized).not.toBe(ppl.fp);
      expect(Math.abs(reloaded - ppl.quantized) / ppl.quantized).toBeLessThan(CHECKPOINT_TOLERANCE.bf16);
      expect(Math.abs(ppl.onnx! - ppl.quantized) / ppl.quantized).toBeLessThan(1e-4);
      if (TRANSFORMERS_JS.includes(arch)) {
        const { ours, transformers } = await greedyBoth(join(dir, 'out-onnx'), 'the cat saw the dog', 12);
        expect(transformers).toEqual(ours);
      }

      const router = ROUTER[arch];
      if (!router) return;
      const config = JSON.parse(await readFile(join(dir, 'out-ct', 'config.json'), 'utf8')) as { quantization_config: { ignore: string[] } };
      expect(config.quantization_config.ignore).toContain(`model.layers.${UNROUTED.layer}.${router}`);
      const layer = run.results.get(`stage1.gptq/layer.${UNROUTED.layer}`) as { experts: { routed_tokens: number[]; unrouted: { expert: number; modules: string[]; rule: string }[] }; warnings: string[] };
      expect(layer.experts.routed_tokens[UNROUTED.expert]).toBe(0);
      expect(layer.experts.routed_tokens.filter((n) => n > 0)).toHaveLength(3);
      expect(layer.experts.unrouted).toEqual([{ expert: UNROUTED.expert, modules: expect.arrayContaining([`model.layers.1.${EXPERT_DOWN[arch]}`]) as unknown as string[], rule: 'all-tokens' }]);
      expect(layer.warnings.some((w) => w.includes(`expert ${UNROUTED.expert}`) && w.includes('"all-tokens"'))).toBe(true);
      const scale = await tensorOf(join(dir, 'out-ct'), `model.layers.1.${EXPERT_DOWN[arch]}.weight_scale`);
      expect(scale.every((s) => Number.isFinite(s) && s > 0)).toBe(true);
    });
  }
});

describe('rtn FP8 on bf16 checkpoints of the newer architectures', () => {
  // FP8: fp8 e4m3 per-tensor weights and static per-tensor fp8 inputs calibrated from the data (ONNX has no
  // float weights, so only compressed-tensors is written)
  for (const arch of ARCH_MODELS) {
    test(`${arch}: the float-quantized checkpoint stores fp8 weights and reloads to the fake-quant perplexity`, async () => {
      const { path, dir } = await recipe(arch, 'bf16', '{ kind: rtn, scheme: FP8, targets: [Linear], ignore: [lm_head] }', false);
      const run = await runRecipe(path);
      const ppl = perplexities(run);
      const reloaded = await checkpointPerplexity(dir, run);
      console.log(`${arch} rtn FP8 (bf16): fp ${ppl.fp.toFixed(4)} quantized ${ppl.quantized.toFixed(4)} checkpoint ${reloaded.toFixed(4)}`);
      const config = JSON.parse(await readFile(join(dir, 'out-ct', 'config.json'), 'utf8')) as { quantization_config: { format: string } };
      expect(config.quantization_config.format).toBe('float-quantized');
      expect(Number.isFinite(ppl.quantized)).toBe(true);
      expect(ppl.quantized).not.toBe(ppl.fp);
      expect(Math.abs(reloaded - ppl.quantized) / ppl.quantized).toBeLessThan(CHECKPOINT_TOLERANCE.bf16);
    });
  }
});

describe('AutoRound on a Mixture-of-Experts model', () => {
  test('qwen3_moe: the expert the router never picks keeps round-to-nearest (rule "rtn"), reported, with finite scales', async () => {
    const { path, dir } = await recipe('qwen3_moe', 'bf16', '{ kind: autoround, scheme: W4A16, iters: 4, targets: [Linear], ignore: [lm_head] }');
    const run = await runRecipe(path);
    expect(Number.isFinite(perplexities(run).quantized)).toBe(true);
    const layer = run.results.get(`stage1.autoround/layer.${UNROUTED.layer}`) as { experts: { routed_tokens: number[]; unrouted: { expert: number; rule: string }[] }; modules: Record<string, { weight_error: number; rtn_weight_error: number }> };
    expect(layer.experts.routed_tokens[UNROUTED.expert]).toBe(0);
    expect(layer.experts.unrouted.map((u) => [u.expert, u.rule])).toEqual([[UNROUTED.expert, 'rtn']]);
    const down = layer.modules[`mlp.experts.${UNROUTED.expert}.down_proj`]!;
    expect(down.weight_error).toBe(down.rtn_weight_error);
    const scale = await tensorOf(join(dir, 'out-ct'), `model.layers.1.mlp.experts.${UNROUTED.expert}.down_proj.weight_scale`);
    expect(scale.every((s) => Number.isFinite(s) && s > 0)).toBe(true);
  });
});
