// Perplexity and KL(fp ‖ q) from the fp evaluation's reference (Σ p log p and ē = Wᵀp per position) against
// KL computed from both models' full logits in float64.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { perplexity, type KlReference, type KlReferenceReader, type KlReferenceWriter } from '../../src/graphs/perplexity.js';
import { runDecoderLayer } from '../../src/graphs/layer-runner.js';
import { embed } from '../../src/model/embed.js';
import { HfSource, type WeightSource } from '../../src/model/source.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { cutWindows, readDatasetText } from '../../src/model/windows.js';
import { Runtime } from '../../src/ort/session.js';
import { klLayout, klReader, klWriter } from '../../src/steps/kl-reference.js';
import { writeExampleModel } from '../../src/steps/example-model.js';
import { tensor, type Tensor } from '../../src/tensor.js';
import { finalLogits } from '../steps/tiny-model.js';
import { presetScheme } from '../../src/quant/scheme.js';

const rt = new Runtime({ device: 'cpu' });
let root: string;
let fp: HfSource;
let ids: Tensor<'int32'>;
const T = 32;

/** the fp model with every Linear weight rounded to a coarse grid: a stand-in for a quantized model */
function coarse(src: HfSource): WeightSource {
  return {
    dir: src.dir,
    config: src.config,
    arch: src.arch,
    tensor: (n) => src.tensor(n),
    actQuant: () => new Map(),
    close: async () => {},
    async layer(l) {
      const t = await src.layer(l);
      for (const [k, v] of Object.entries(t)) if (k.endsWith('proj.weight')) t[k] = tensor('float32', v.dims, v.data.map((x) => Math.round(x * 16) / 16));
      return t;
    },
  };
}

/** KL(p ‖ q) per window position from full logits, float64 */
async function directKl(q: WeightSource, windows: number): Promise<number> {
  const last = async (s: WeightSource): Promise<Float32Array> => {
    const cfg = s.config;
    let h = tensor('float32', [windows, T, cfg.hiddenSize], embed(await s.tensor(s.arch.embedding), ids.data.subarray(0, windows * T)));
    for (let l = 0; l < cfg.numLayers; l++) h = (await runDecoderLayer(rt, cfg, s.arch.layer(cfg, l), await s.layer(l), h))['out'] as Tensor<'float32'>;
    return finalLogits(rt, fp, h);
  };
  const [a, b] = [await last(fp), await last(q)];
  const V = fp.config.vocabSize;
  const logSoftmax = (z: Float32Array, o: number): Float64Array => {
    let m = -Infinity;
    for (let v = 0; v < V; v++) m = Math.max(m, z[o + v] as number);
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp((z[o + v] as number) - m);
    return Float64Array.from({ length: V }, (_, v) => (z[o + v] as number) - m - Math.log(s));
  };
  let kl = 0;
  for (let w = 0; w < windows; w++) {
    for (let t = 0; t < T - 1; t++) {
      const o = (w * T + t) * V;
      const [lp, lq] = [logSoftmax(a, o), logSoftmax(b, o)];
      for (let v = 0; v < V; v++) kl += Math.exp(lp[v] as number) * ((lp[v] as number) - (lq[v] as number));
    }
  }
  return kl / (windows * (T - 1));
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'qf-perplexity-'));
  await writeExampleModel(rt, join(root, 'model'), { size: 'tiny', seed: 0, dtype: 'f32' });
  fp = await HfSource.open(join(root, 'model'));
  ids = cutWindows(loadTokenizer(fp.dir).encode(readDatasetText(join(fp.dir, 'calib.txt'))), T, 12);
});
afterAll(async () => {
  await fp.close();
  await rt.close();
  await rm(root, { recursive: true, force: true });
});

describe('perplexity with the KL reference', () => {
  test('keeping the reference leaves the fp perplexity bit for bit', async () => {
    const plain = await perplexity(rt, fp, ids, { batch: 5 });
    const kept: KlReference[] = [];
    const writer: KlReferenceWriter = { windows: 7, write: async (_s, r) => void kept.push(r) };
    const withRef = await perplexity(rt, fp, ids, { batch: 5, klWrite: writer });
    expect(withRef.nll).toBe(plain.nll);
    expect(kept.reduce((n, r) => n + (r.negent.dims[0] as number), 0)).toBe(7);
  });

  test('KL from the reference equals KL from both models’ logits, on the windows it covers', async () => {
    const dir = await mkdtemp(join(root, 'kl-'));
    const H = fp.config.hiddenSize;
    const layout = { ...klLayout(12, T, H), windows: 9, group: 4 };
    const writer = klWriter(dir, layout, T, H);
    await perplexity(rt, fp, ids, { batch: 5, klWrite: writer });
    await writer.finish();
    const reader: KlReferenceReader = klReader(dir, layout, T, H);
    const q = coarse(fp);
    const r = await perplexity(rt, q, ids, { batch: 5, klRead: reader });
    expect(r.klWindows).toBe(9);
    expect(r.kl).toBeGreaterThan(0);
    expect(r.kl!).toBeCloseTo(await directKl(q, 9), 5);
    expect(r.nll).toBe((await perplexity(rt, q, ids, { batch: 5 })).nll);
  });
});

describe('perplexity with per-token activation quantization', () => {
  // a stage-2 W8A8 model: every Linear's input fake-quantized per token (8 bits; 4 bits for a different graph)
  const withActs = (bits: number): WeightSource => {
    const args = { ...presetScheme('W8A8', ['Linear']).input_activations!, num_bits: bits };
    const locals = fp.arch.layer(fp.config, 0).linears.map((l) => l.local);
    return { ...coarse(fp), actQuant: () => new Map(locals.map((l) => [l, args])) };
  };

  test('does not depend on what the Runtime evaluated before: fused and basic-op layers and act-quant args are memoised apart', async () => {
    const fresh = new Runtime({ device: 'cpu' });
    let alone: number;
    let basicAlone: number;
    try {
      alone = (await perplexity(fresh, withActs(8), ids)).nll;
    } finally {
      await fresh.close();
    }
    const freshBasic = new Runtime({ device: 'cpu' });
    try {
      basicAlone = (await perplexity(freshBasic, withActs(8), ids, { basicLayers: true })).nll;
    } finally {
      await freshBasic.close();
    }
    // the fused layer's float32 values differ from the basic-op layer's in the last bits, and per-token rounding
    // flips on them: a kernel memoised without the layer kind would make the next evaluation take the other's
    expect(basicAlone).not.toBe(alone);
    await perplexity(rt, withActs(8), ids, { basicLayers: true });
    await perplexity(rt, withActs(4), ids);
    await perplexity(rt, coarse(fp), ids);
    expect((await perplexity(rt, withActs(8), ids)).nll).toBe(alone);
    expect((await perplexity(rt, withActs(8), ids, { basicLayers: true })).nll).toBe(basicAlone);
  });
});
