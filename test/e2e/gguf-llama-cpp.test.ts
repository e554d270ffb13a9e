// GGUF files quantforge writes for the shared models, run by llama.cpp (node-llama-cpp's prebuilt CPU
// binary): every file loads; llama.cpp's greedy tokens equal quantforge's greedy generation on the same
// dequantized weights (GgufSource reads them back from the file as llama.cpp dequantizes them); llama.cpp's
// perplexity on the first evaluation windows is within 0.5% of quantforge's; both tokenizers agree.
//
// Greedy decoding may part at a near-tie: llama.cpp's CPU matmuls for quantized weights round the
// activations to 8 bits (Q8_0 / Q8_K blocks), which moves logits by a few hundredths of a nat. So tokens must
// be equal up to the end, or up to a position where quantforge's own logits of the two candidates are within
// NEAR_TIE nats; every run logs where and by how much. (Measured: stories260K equal in every type;
// wiki-llama-8m parts in some types at margins of 0.003–0.04 nats.)

import { mkdtemp, rm, stat } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { exportGguf, type GgufExportResult } from '../../src/formats/gguf/export.js';
import { permuteRows, permutedHeads } from '../../src/formats/gguf/llama.js';
import { GgufFile } from '../../src/formats/gguf/read.js';
import { generate } from '../../src/graphs/generate.js';
import { GgufSource } from '../../src/model/gguf-source.js';
import { perplexity } from '../../src/graphs/perplexity.js';
import { HfSource } from '../../src/model/source.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { cutWindows } from '../../src/model/windows.js';
import { Runtime } from '../../src/ort/session.js';
import { tensor } from '../../src/tensor.js';
import { encodeTensor } from '../../src/quant/gguf-quantize.js';
import type { GgmlTypeInfo, GgmlTypeName } from '../../src/quant/gguf-types.js';
import { llamaGreedy, llamaMeanNll, withLlamaModel } from './llama-cpp.js';
import { describeShared, sharedData, sharedModel } from './shared.js';

const SEQ = 256;
const NEW_TOKENS = 40;
const NEAR_TIE = 0.1;

// The types test/e2e/gguf-recipes.test.ts runs through rtn recipes (ggml's reference bytes, the same the exporter
// writes here) are not repeated: stories260K Q4_0 / Q8_0 / Q4_K, wiki-llama-8m Q4_0 / Q4_K. This file adds the
// unquantized path (F32), the types no recipe test writes (Q4_1, Q6_K; Q5_0 as Q4_K's fallback there), and
// wiki-llama-8m's Q8_0 (the acceptance lists it).
const CASES: { model: string; data: string; prompt: string; windows: number; types: GgmlTypeName[] }[] = [
  { model: 'stories260K', data: 'tinystories-eval.txt', prompt: 'Once upon a time', windows: 8, types: ['F32', 'Q4_1', 'Q6_K'] },
  // hidden 288 is no multiple of 256: only ffn_down (768 columns) is a K-quant, the rest falls back as llama.cpp does
  { model: 'wiki-llama-8m', data: 'wikitext-2-raw-test.txt', prompt: 'The history of the city', windows: 4, types: ['Q8_0', 'Q6_K'] },
];

describeShared('GGUF in llama.cpp', () => {
  let rt: Runtime;
  let dir: string;
  const measured: string[] = [];

  beforeAll(async () => {
    rt = new Runtime({ device: 'cpu' });
    dir = await mkdtemp(join(tmpdir(), 'qf-gguf-'));
  });
  afterAll(async () => {
    await rt.close();
    await rm(dir, { recursive: true, force: true });
    if (measured.length > 0) console.info(['model type: perplexity quantforge / llama.cpp (gap), file bytes', ...measured].join('\n'));
  });

  const exported = new Map<string, Promise<GgufExportResult>>();
  function exportTo(model: string, type: GgmlTypeName): Promise<GgufExportResult> {
    const key = `${model}-${type}`;
    if (!exported.has(key)) {
      exported.set(
        key,
        HfSource.open(sharedModel(model)).then(async (src) => {
          try {
            const storedDtype = async (n: string) => (await src.checkpoint.info(n)).dtype;
            return await exportGguf(src, join(dir, `${key}.gguf`), { type, storedDtype });
          } finally {
            await src.close();
          }
        }),
      );
    }
    return exported.get(key)!;
  }

  /** quantforge's total NLL of ids[1..] given the ones before: compares two continuations of one prefix */
  async function sequenceNll(source: GgufSource, ids: readonly number[]): Promise<number> {
    const r = await perplexity(rt, source, tensor('int32', [1, ids.length], Int32Array.from(ids)));
    return r.nll * (ids.length - 1);
  }

  for (const c of CASES) {
    const tok = () => loadTokenizer(sharedModel(c.model));
    const windows = () => cutWindows(tok().encode(readFileSync(sharedData(c.data), 'utf8').slice(0, 4000 * c.windows)), SEQ, c.windows);

    for (const type of c.types) {
      test(`${c.model} ${type}: llama.cpp's greedy tokens and perplexity match quantforge on the file's weights`, async () => {
        const r = await exportTo(c.model, type);
        // the file is the header plus each tensor's block bytes, padded to the alignment
        const file = await GgufFile.open(r.path);
        const data = file.header.tensors.reduce((s, t) => s + Math.ceil(t.byteLength / 32) * 32, 0);
        await file.close();
        expect((await stat(r.path)).size).toBe(file.header.dataOffset + data);

        const w = windows();
        expect(w.dims).toEqual([c.windows, SEQ]);
        const prompt = tok().encode(c.prompt);
        const source = await GgufSource.open(r.path);
        const theirs = await withLlamaModel(r.path, async (m) => ({ nll: await llamaMeanNll(m, w.data, SEQ), greedy: await llamaGreedy(m, prompt, NEW_TOKENS) }));
        let ours: { nll: number; greedy: number[] };
        let parted = 'equal';
        try {
          const ppl = await perplexity(rt, source, w);
          const [greedy] = await generate(rt, source, [prompt], { maxNewTokens: NEW_TOKENS });
          ours = { nll: ppl.nll, greedy: greedy! };
          const k = ours.greedy.findIndex((t, i) => t !== theirs.greedy[i]);
          if (k >= 0) {
            const margin = (await sequenceNll(source, [...ours.greedy.slice(0, k), theirs.greedy[k]!])) - (await sequenceNll(source, ours.greedy.slice(0, k + 1)));
            parted = `parted at new token ${k - prompt.length + 1} by ${margin.toFixed(4)} nats`;
            expect(margin, `greedy tokens part at ${k}: ${ours.greedy.slice(0, k + 1).join()} vs ${theirs.greedy.slice(0, k + 1).join()}`).toBeLessThan(NEAR_TIE);
          }
        } finally {
          await source.close();
        }
        expect(theirs.greedy.length).toBe(ours.greedy.length);
        const gap = Math.exp(theirs.nll - ours.nll) - 1;
        measured.push(`${c.model} ${type}: ${Math.exp(ours.nll).toFixed(4)} / ${Math.exp(theirs.nll).toFixed(4)} (${(gap * 100).toFixed(3)}%), greedy ${parted}, ${r.bytes} bytes`);
        expect(Math.abs(gap)).toBeLessThan(0.005);
      });
    }

    test(`${c.model}: llama.cpp's tokenizer gives the ids of the model's tokenizer.json`, async () => {
      const r = await exportTo(c.model, 'Q8_0');
      expect(r.warnings).toEqual([]);
      const text = readFileSync(sharedData(c.data), 'utf8').slice(0, 20000);
      const samples = [text, ...text.split('\n').slice(0, 200), 'Hello  world\t\ttabs', ' leading space', 'émoji 🦙, 中文, Ωμέγα', '3.14159, 2,718!?', ''];
      const hf = tok();
      await withLlamaModel(r.path, async (m) => {
        for (const s of samples) expect(Array.from(m.tokenize(s, false)), JSON.stringify(s.slice(0, 60))).toEqual(hf.encode(s).slice(1));
        expect(m.tokens.bos).toBe(1);
        expect(m.tokens.eos).toBe(2);
      });
    });
  }

  test('without the converter’s q/k row permutation llama.cpp decodes stories260K differently (the permutation is needed)', async () => {
    const src = await HfSource.open(sharedModel('stories260K'));
    let path: string;
    try {
      // hand the exporter q/k bytes in inverse order, so that after its permutation the file keeps HF's row order
      const encode = (n: string, w: Float32Array, rows: number, cols: number, type: GgmlTypeInfo) => {
        const heads = permutedHeads(n, src.config);
        return heads === undefined ? undefined : permuteRows(encodeTensor(type, w, rows, cols), rows, heads, true);
      };
      path = (await exportGguf(src, join(dir, 'unpermuted.gguf'), { type: 'Q8_0', encode })).path;
    } finally {
      await src.close();
    }
    const prompt = loadTokenizer(sharedModel('stories260K')).encode('Once upon a time');
    const permuted = await withLlamaModel((await exportTo('stories260K', 'Q8_0')).path, (m) => llamaGreedy(m, prompt, NEW_TOKENS));
    const unpermuted = await withLlamaModel(path, (m) => llamaGreedy(m, prompt, NEW_TOKENS));
    expect(unpermuted).not.toEqual(permuted);
  });

  test('babyllama-char105 (no byte fallback) exports with a warning that llama.cpp cannot tokenize outside its characters', async () => {
    const r = await exportTo('babyllama-char105', 'Q8_0');
    expect(r.warnings.join('\n')).toMatch(/no byte fallback.*aborts the process/);
    // its weights still read back: the same greedy characters as the reference from the fp32 model
    const source = await GgufSource.open(r.path);
    try {
      const t = loadTokenizer(sharedModel('babyllama-char105'));
      const [out] = await generate(rt, source, [t.encode('Once upon a time')], { maxNewTokens: 40 });
      expect(t.decode(out!, true)).toMatch(/^Once upon a time, there was a little girl named Lily/);
    } finally {
      await source.close();
    }
  });
});
