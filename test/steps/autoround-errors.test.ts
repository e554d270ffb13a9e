import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { quantizeWeightRtn } from '../../src/algo/fake-quant.js';
import type { InputSite, LinearSpec } from '../../src/model/arch.js';
import { HfSource } from '../../src/model/source.js';
import { Runtime } from '../../src/ort/session.js';
import { presetScheme } from '../../src/quant/scheme.js';
import { forEachBatch } from '../../src/steps/activations.js';
import { outputErrors } from '../../src/steps/autoround-errors.js';
import { RoutedTokens } from '../../src/steps/experts.js';
import { xtxTap } from '../../src/steps/gptq-job.js';
import type { Tensor } from '../../src/tensor.js';
import { writeTinyModel, type TinyModel } from './tiny-model.js';

const rt = new Runtime({ device: 'cpu' });
let tiny: TinyModel;
let src: HfSource;

beforeAll(async () => {
  tiny = await writeTinyModel(rt, 'autoround-errors', 4, 32);
  src = await HfSource.open(tiny.modelDir);
});

afterAll(async () => {
  await src.close();
  await rt.close();
  await tiny.close();
});

/** Σ‖X(W − Q)ᵀ‖² / Σ‖XWᵀ‖² in float64 from the site's activations X [tokens, in] */
function direct(x: Float32Array, l: LinearSpec, w: Float32Array, q: Float32Array): number {
  const [rows, cols] = [l.outFeatures, l.inFeatures];
  let [num, den] = [0, 0];
  for (let t = 0; t < x.length / cols; t++) {
    for (let r = 0; r < rows; r++) {
      let [a, b] = [0, 0];
      for (let c = 0; c < cols; c++) {
        const xv = x[t * cols + c]!;
        a += xv * w[r * cols + c]!;
        b += xv * (w[r * cols + c]! - q[r * cols + c]!);
      }
      [num, den] = [num + b * b, den + a * a];
    }
  }
  return num / den;
}

describe('autoround output errors', () => {
  test('equal ‖X(W − Q)ᵀ‖² / ‖XWᵀ‖² over the full-precision block\'s Linear inputs, for every input site', async () => {
    const cfg = src.config;
    const layer = src.arch.layer(cfg, 0);
    const fp = tiny.layer0;
    // one Linear per input site, and a second reader of attn_in
    const targets = ['self_attn.q_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.up_proj', 'mlp.down_proj'].map((n) => layer.linears.find((l) => l.local === n)!);
    const quantized: Record<string, { autoround: Float32Array; rtn: Float32Array }> = {};
    for (const l of targets) {
      const w = fp[`${l.local}.weight`]!.data;
      const q4 = await quantizeWeightRtn(w, l.outFeatures, l.inFeatures, presetScheme('W4A16', ['Linear']).weights!);
      const q8 = await quantizeWeightRtn(w, l.outFeatures, l.inFeatures, presetScheme('W8A16', ['Linear']).weights!);
      quantized[l.local] = { autoround: q4.dequantized, rtn: q8.dequantized };
    }
    const got = await outputErrors(rt, cfg, layer, new RoutedTokens(), fp, tiny.embedded, new Map(), quantized);

    // the sites' activations themselves (the tap's host form), concatenated over batches
    const sites = [...new Set(targets.map((l) => l.site))];
    const width = (s: InputSite): number => targets.find((l) => l.site === s)!.inFeatures;
    const xs = new Map<InputSite, Float32Array[]>(sites.map((s) => [s, []]));
    await forEachBatch(rt, cfg, layer, fp, tiny.embedded, { tap: xtxTap(sites, width, false, true), skipOut: true, actQuant: new Map() }, (out: Record<string, Tensor>) => {
      for (const s of sites) xs.get(s)!.push(out[`x.${s}`]!.data as Float32Array);
    });
    for (const l of targets) {
      const parts = xs.get(l.site)!;
      const x = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
      parts.reduce((o, p) => (x.set(p, o), o + p.length), 0);
      const w = fp[`${l.local}.weight`]!.data;
      const want = { autoround: direct(x, l, w, quantized[l.local]!.autoround), rtn: direct(x, l, w, quantized[l.local]!.rtn) };
      expect(want.rtn, l.local).toBeLessThan(want.autoround);
      expect(got[l.local]!.autoround / want.autoround, l.local).toBeCloseTo(1, 5);
      expect(got[l.local]!.rtn / want.rtn, l.local).toBeCloseTo(1, 5);
    }
    expect(Object.keys(got).sort()).toEqual(targets.map((l) => l.local).sort());
  });
});
