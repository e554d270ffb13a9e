// Greedy tokens of an exported ONNX directory from quantforge and from @huggingface/transformers (which runs
// the same onnxruntime-node), for interoperability checks. The prompt's token ids come from transformers.js's
// own tokenizer (AutoTokenizer on the export directory), so our tokenizer is checked against it too.

import { readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { parseModelConfig } from '../../src/model/config.js';
import { OnnxModel } from '../../src/graphs/onnx-model.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { Runtime } from '../../src/ort/session.js';

export interface Greedy {
  /** the prompt as transformers.js's AutoTokenizer encodes it (what both models are fed) */
  ids: number[];
  /** the prompt as quantforge's tokenizer encodes it */
  ourIds: number[];
  ours: number[];
  transformers: number[];
}

export async function greedyBoth(onnxDir: string, prompt: string, newTokens: number): Promise<Greedy> {
  const { AutoModelForCausalLM, AutoTokenizer, Tensor, env } = await import('@huggingface/transformers');
  env.allowRemoteModels = false;
  env.localModelPath = dirname(onnxDir);
  const tokenizer = await AutoTokenizer.from_pretrained(basename(onnxDir));
  const ids = Array.from(tokenizer.encode(prompt));
  const ourIds = loadTokenizer(onnxDir).encode(prompt);

  const rt = new Runtime({ device: 'cpu' });
  const cfg = parseModelConfig(JSON.parse(readFileSync(join(onnxDir, 'config.json'), 'utf8')) as Record<string, unknown>);
  const model = await OnnxModel.open(rt, onnxDir, cfg);
  const ours = await model.generate(ids, newTokens, false);
  await model.close();
  await rt.close();
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
  return { ids, ourIds, ours, transformers: Array.from(out.data, Number) };
}
