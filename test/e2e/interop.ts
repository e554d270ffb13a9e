// Greedy tokens of an exported ONNX directory from quantforge and from @huggingface/transformers (which runs
// the same onnxruntime-node), for interoperability checks.

import { readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { parseModelConfig } from '../../src/model/config.js';
import { OnnxModel } from '../../src/graphs/onnx-model.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { Runtime } from '../../src/ort/session.js';

export async function greedyBoth(onnxDir: string, prompt: string, newTokens: number): Promise<{ ours: number[]; transformers: number[] }> {
  const rt = new Runtime({ device: 'cpu' });
  const cfg = parseModelConfig(JSON.parse(readFileSync(join(onnxDir, 'config.json'), 'utf8')) as Record<string, unknown>);
  const model = await OnnxModel.open(rt, onnxDir, cfg);
  const ids = loadTokenizer(onnxDir).encode(prompt);
  const ours = await model.generate(ids, newTokens, false);
  await model.close();
  await rt.close();
  const { AutoModelForCausalLM, Tensor, env } = await import('@huggingface/transformers');
  env.allowRemoteModels = false;
  env.localModelPath = dirname(onnxDir);
  const hf = await AutoModelForCausalLM.from_pretrained(basename(onnxDir), { dtype: 'fp32', device: 'cpu' });
  const input = BigInt64Array.from(ids.map(BigInt));
  const out = (await hf.generate({
    input_ids: new Tensor('int64', input, [1, ids.length]),
    attention_mask: new Tensor('int64', input.map(() => 1n), [1, ids.length]),
    max_new_tokens: newTokens,
    min_new_tokens: newTokens,
    do_sample: false,
  })) as { data: BigInt64Array };
  await hf.dispose();
  return { ours, transformers: Array.from(out.data, Number) };
}
