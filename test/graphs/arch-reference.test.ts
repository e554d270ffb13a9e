// Each newer architecture on onnxruntime (the layer-by-layer evaluation path and the KV-cache generation path)
// against the float64 reference written from HF's modeling files, on generated bf16 checkpoints.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { generate } from '../../src/graphs/generate.js';
import { perplexity } from '../../src/graphs/perplexity.js';
import { HfSource } from '../../src/model/source.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { cutWindows, readDatasetText } from '../../src/model/windows.js';
import { Runtime } from '../../src/ort/session.js';
import { ARCH_MODELS, writeArchModel } from '../fixtures/arch-models.js';
import { referenceLogits, referenceNll } from '../fixtures/reference-model.js';

const rt = new Runtime({ device: 'cpu' });
let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'qf-arch-ref-'));
});

afterAll(async () => {
  await rt.close();
  await rm(root, { recursive: true, force: true });
});

/** greedy continuation under the reference: argmax of its last logits, one token at a time (no cache) */
async function referenceGreedy(src: HfSource, prompt: number[], n: number): Promise<number[]> {
  const seq = [...prompt];
  const V = src.config.vocabSize;
  for (let i = 0; i < n; i++) {
    const last = (await referenceLogits(src, seq)).subarray((seq.length - 1) * V, seq.length * V);
    seq.push(last.indexOf(Math.max(...last)));
  }
  return seq;
}

describe('architectures against the float64 reference', () => {
  for (const arch of ARCH_MODELS) {
    test(`${arch}: perplexity within 1e-5 relative, greedy tokens equal`, async () => {
      const dir = join(root, arch);
      await writeArchModel(dir, arch);
      const src = await HfSource.open(dir);
      try {
        const windows = cutWindows(loadTokenizer(dir).encode(readDatasetText(join(dir, 'eval.txt'))), 24, 3);
        const ours = await perplexity(rt, src, windows);
        const rows = Array.from({ length: windows.dims[0]! }, (_, w) => Array.from(windows.data.subarray(w * 24, (w + 1) * 24)));
        const refNll = await referenceNll(src, rows);
        const rel = Math.abs(ours.perplexity - Math.exp(refNll)) / Math.exp(refNll);
        console.log(`${arch}: perplexity ${ours.perplexity.toFixed(6)} vs reference ${Math.exp(refNll).toFixed(6)} (relative ${rel.toExponential(2)})`);
        expect(rel).toBeLessThan(1e-5);
        // the cached-attention path: prompt then one token at a time across the sliding window
        const prompt = rows[0]!.slice(0, 5);
        const [greedy] = await generate(rt, src, [prompt], { maxNewTokens: 8 });
        expect(greedy).toEqual(await referenceGreedy(src, prompt, 8));
      } finally {
        await src.close();
      }
    });
  }
});
