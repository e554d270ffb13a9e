// GGUF schemes through `quantforge run` recipes (the real planner, executor and steps), with llama.cpp as the
// client: rtn GGUF_Q4_0, GGUF_Q8_0, GGUF_Q4_K and GPTQ GGUF_Q4_0 on stories260K and wiki-llama-8m, AutoRound
// GGUF_Q4_0 on stories260K. Each file loads in llama.cpp; llama.cpp's greedy tokens equal quantforge's on the
// file (near-tie rule, gguf-agreement.ts); llama.cpp's perplexity on the evaluation windows is within 0.5% of
// quantforge's, which equals the fake-quantized model's (the file holds exactly the values the method chose);
// the file's size is the block arithmetic; the packed codes are the layer states' codes; GPTQ and AutoRound
// beat rtn by llama.cpp's number.

import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { permuteRows, permutedHeads, llamaTensorName } from '../../src/formats/gguf/llama.js';
import { GgufFile } from '../../src/formats/gguf/read.js';
import { parseModelConfig } from '../../src/model/config.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { Runtime } from '../../src/ort/session.js';
import { openModel } from '../../src/outputs/open.js';
import { BLOCK_FORMATS, type GgufBlockTypeName } from '../../src/quant/gguf-quantize.js';
import { storedBlockType } from '../../src/quant/gguf-scheme.js';
import { GGML_TYPES, rowBytes } from '../../src/quant/gguf-types.js';
import { readIds } from '../../src/steps/activations.js';
import { readLayerState } from '../../src/steps/layer-state.js';
import { agreement, NEAR_TIE } from './gguf-agreement.js';
import { sharedRecipe } from './recipes.js';
import { runRecipe, type RecipeRun } from './run-recipe.js';
import { describeShared, SHARED_MODELS, sharedModel } from './shared.js';

const MODELS = [
  { name: 'stories260K', prompt: 'Once upon a time', windows: 8, samples: 32 },
  { name: 'wiki-llama-8m', prompt: 'The history of the city', windows: 8, samples: 32 },
] as const;
type Case = { method: 'rtn' | 'gptq' | 'autoround'; type: GgufBlockTypeName };
// wiki-llama-8m adds what stories260K cannot show (a real Q4_K: ffn_down's 768 columns; the rest falls back to
// Q5_0) and a second GPTQ-vs-rtn comparison; its Q8_0 adds nothing over stories260K's and gguf-llama-cpp.test.ts's
const CASES: Readonly<Record<(typeof MODELS)[number]['name'], readonly Case[]>> = {
  stories260K: [
    { method: 'rtn', type: 'Q4_0' },
    { method: 'gptq', type: 'Q4_0' },
    { method: 'autoround', type: 'Q4_0' },
    { method: 'rtn', type: 'Q8_0' },
    { method: 'rtn', type: 'Q4_K' },
  ],
  'wiki-llama-8m': [
    { method: 'rtn', type: 'Q4_0' },
    { method: 'gptq', type: 'Q4_0' },
    { method: 'rtn', type: 'Q4_K' },
  ],
};
const NEW_TOKENS = 32;

describeShared('GGUF schemes through recipes, run by llama.cpp', () => {
  let rt: Runtime;
  const measured: string[] = [];
  beforeAll(() => {
    rt = new Runtime({ device: 'cpu' });
  });
  afterAll(async () => {
    await rt.close();
    if (measured.length > 0) console.info(['model method type: perplexity quantforge / llama.cpp (gap), greedy, bits per Linear weight, file bytes', ...measured].join('\n'));
  });

  for (const m of MODELS) {
    const shared = SHARED_MODELS.find((s) => s.name === m.name)!;
    const llamaPpl = new Map<string, number>();

    for (const c of CASES[m.name]) {
      test(`${m.name} ${c.method} GGUF_${c.type}: loads in llama.cpp, same greedy tokens, perplexity within 0.5%, size = block arithmetic`, async () => {
        // autoround: 10 iterations keep the suite short (50 and 200: BENCHMARKS.md, "AutoRound on GGUF blocks")
        const stage = `  - { kind: ${c.method}, scheme: GGUF_${c.type}, targets: [Linear], ignore: [lm_head]${c.method === 'autoround' ? ', iters: 10' : ''} }`;
        const { path, dir } = sharedRecipe(shared, stage, { samples: m.samples, evalWindows: m.windows });
        const out = join(dir, 'out-gguf');
        writeFileSync(path, `${readFileSync(path, 'utf8')}outputs:\n  - { format: gguf, path: ${out} }\n`);
        const run = await runRecipe(path);
        const ppl = (run.summary.metrics as { perplexity: { quantized: number; gguf: number } }).perplexity;
        // the file holds exactly the values the method chose: its perplexity is the fake-quantized model's
        expect(Math.abs(ppl.gguf - ppl.quantized) / ppl.quantized).toBeLessThan(1e-6);

        const file = join(out, 'model.gguf');
        const windows = await readIds(run.artifacts.get('tokenize/evaluation')!);
        const prompt = loadTokenizer(sharedModel(m.name)).encode(m.prompt);
        const a = await agreement(rt, file, windows, prompt, NEW_TOKENS);
        const gap = Math.exp(a.llamaNll) / ppl.gguf - 1;
        const size = await checkSize(file, c.type);
        llamaPpl.set(`${c.method}-${c.type}`, Math.exp(a.llamaNll));
        measured.push(`${m.name} ${c.method} ${c.type}: ${ppl.gguf.toFixed(4)} / ${Math.exp(a.llamaNll).toFixed(4)} (${(gap * 100).toFixed(3)}%), greedy ${a.greedy}, ${size.bitsPerWeight.toFixed(3)} bits/weight (${size.fallbacks}), ${size.bytes} bytes`);
        expect(a.margin, `${a.ours.join()} vs ${a.theirs.join()}`).toBeLessThan(NEAR_TIE);
        expect(a.theirs.length).toBe(a.ours.length);
        expect(Math.abs(gap)).toBeLessThan(0.005);

        if (c.method !== 'rtn') {
          await expectPackedCodes(run, file, m.name, c.method);
          const rtn = llamaPpl.get(`rtn-${c.type}`);
          if (rtn !== undefined) expect(Math.exp(a.llamaNll), `${c.method} ${c.type} vs rtn by llama.cpp`).toBeLessThan(rtn);
        }
        if (c.method === 'rtn' && c.type === 'Q4_0') {
          const opened = await openModel(rt, out);
          expect(opened.format).toBe('gguf');
          await opened.close();
        }
      });
    }
  }
});

/** the file is its header plus each tensor's rows of whole blocks (aligned to 32); Linears are in the scheme's type or llama.cpp's fallback */
async function checkSize(path: string, wanted: GgufBlockTypeName): Promise<{ bytes: number; bitsPerWeight: number; fallbacks: string }> {
  const file = await GgufFile.open(path);
  try {
    let data = 0;
    let linearBytes = 0;
    let linearWeights = 0;
    const fallbacks = new Map<string, number>();
    for (const t of file.header.tensors) {
      const [rows, cols] = t.shape.length === 2 ? [t.shape[0]!, t.shape[1]!] : [1, t.shape[0]!];
      const bytes = rows * rowBytes(t.type, cols);
      expect(t.byteLength, t.name).toBe(bytes);
      data += Math.ceil(bytes / 32) * 32;
      if (/^blk\.\d+\.(attn_(q|k|v|output)|ffn_(gate|up|down))\.weight$/.test(t.name)) {
        const expected = storedBlockType(wanted, cols).type ?? 'F32';
        expect(t.type.name, t.name).toBe(expected);
        if (expected !== wanted) fallbacks.set(`${cols} cols → ${expected}`, (fallbacks.get(`${cols} cols → ${expected}`) ?? 0) + 1);
        linearBytes += bytes;
        linearWeights += rows * cols;
      }
    }
    const bytes = statSync(path).size;
    expect(bytes).toBe(file.header.dataOffset + data);
    const note = [...fallbacks].map(([k, n]) => `${n}× ${k}`).join(', ') || 'no fallbacks';
    return { bytes, bitsPerWeight: (linearBytes * 8) / linearWeights, fallbacks: note };
  } finally {
    await file.close();
  }
}

/** every packed Linear of layer 0 unpacks to the codes the method's layer state holds (no second rounding) */
async function expectPackedCodes(run: RecipeRun, path: string, model: string, method: string): Promise<void> {
  const state = await readLayerState(run.artifacts.get(`stage1.${method}/layer.0`)!, 0);
  const cfg = parseModelConfig(JSON.parse(readFileSync(join(sharedModel(model), 'config.json'), 'utf8')) as Record<string, unknown>);
  const file = await GgufFile.open(path);
  try {
    let compared = 0;
    for (const [local, q] of Object.entries(state.quant)) {
      const hf = `model.layers.0.${local}.weight`;
      const info = file.info(llamaTensorName(hf)!);
      const format = BLOCK_FORMATS[info.type.name as GgufBlockTypeName];
      const [rows, cols] = [info.shape[0]!, info.shape[1]!];
      let bytes = await file.bytes(llamaTensorName(hf)!);
      const heads = permutedHeads(hf, cfg);
      if (heads !== undefined) bytes = permuteRows(bytes, rows, heads, true);
      const size = GGML_TYPES[info.type.name].blockSize;
      const codes = new Int8Array(rows * cols);
      for (let k = 0; k < (rows * cols) / size; k++) codes.set(format.unpack(bytes, k * GGML_TYPES[info.type.name].typeSize).codes, k * size);
      expect(codes, local).toEqual(q.codes.data);
      compared++;
    }
    expect(compared).toBeGreaterThan(0);
  } finally {
    await file.close();
  }
}
