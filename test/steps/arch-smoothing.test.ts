// The smoothing stages on the newer architectures, through their StepImpls with the adapters' default
// mappings: SmoothQuant and a fold-only AWQ leave each layer's output unchanged (Gemma 3's (1 + w) norms fold as
// w' = (1 + w)/s − 1; an MoE router absorbs the scales of the norm it reads, beside every expert's gate/up),
// and AWQ with a scheme quantizes every expert.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runDecoderLayer } from '../../src/graphs/layer-runner.js';
import { embed } from '../../src/model/embed.js';
import { HfSource } from '../../src/model/source.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { cutWindows, readDatasetText } from '../../src/model/windows.js';
import { Runtime } from '../../src/ort/session.js';
import { presetScheme, type QuantArgs } from '../../src/quant/scheme.js';
import { shapesAllow } from '../../src/stages/mappings.js';
import { awqStep, type AwqParams } from '../../src/steps/awq.js';
import { captureStep, type CaptureParams, type Statistic } from '../../src/steps/capture.js';
import { readLayerState } from '../../src/steps/layer-state.js';
import { smoothquantStep, type SmoothQuantParams } from '../../src/steps/smoothquant.js';
import type { Mapping } from '../../src/model/arch.js';
import { tensor, type Tensor } from '../../src/tensor.js';
import { ARCH_MODELS, UNROUTED, writeArchModel } from '../fixtures/arch-models.js';
import { hiddenDir, relChange, stepContext, type TinyModel } from './tiny-model.js';

const rt = new Runtime({ device: 'cpu', threads: 2 });
let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'qf-arch-smoothing-'));
});

afterAll(async () => {
  await rt.close();
  await rm(root, { recursive: true, force: true });
});

const W4A16_ASYM = presetScheme('W4A16_ASYM', ['Linear']).weights as QuantArgs;

describe('smoothing steps on the newer architectures', () => {
  for (const arch of ARCH_MODELS) {
    test(`${arch}: smoothquant and fold-only awq preserve the layer; awq with a scheme quantizes every expert`, async () => {
      const model = { root: join(root, arch), modelDir: join(root, arch, 'model') } as TinyModel;
      // float32: the fold is then exact algebra (a bf16 checkpoint's smoothed tensors are rounded back to bf16,
      // as torch smooths in the model dtype; test/e2e/dense-archs.test.ts checks that end to end)
      await writeArchModel(model.modelDir, arch, 0, 'f32');
      const src = await HfSource.open(model.modelDir);
      try {
        const cfg = src.config;
        const l = UNROUTED.layer;
        const spec = src.arch.layer(cfg, l);
        const ids = cutWindows(loadTokenizer(model.modelDir).encode(readDatasetText(join(model.modelDir, 'calib.txt'))), 24, 4);
        const x = tensor('float32', [4, 24, cfg.hiddenSize], embed(await src.tensor(src.arch.embedding), ids.data, cfg.features.embedScale));
        const hidden = await hiddenDir(model.root, x);
        const forward = async (w: Record<string, Tensor>): Promise<Float32Array> => (await runDecoderLayer(rt, cfg, spec, w, x))['out']!.data as Float32Array;
        const base = await forward(await src.layer(l));
        const capture = async (mappings: Mapping[], statistic: Statistic): Promise<string> => {
          const ctx = await stepContext<CaptureParams>(rt, model, { layer: l, statistic, modules: [...new Set(mappings.map((m) => m.balance[0]!))] }, { hidden });
          await captureStep.run(ctx);
          return ctx.outDir;
        };

        const sqMappings = src.arch.smoothquantMappings(cfg, l);
        if (cfg.features.moe) expect(sqMappings[1]!.balance).toContain(spec.linears.find((s) => s.role === 'router')!.local);
        const sq = await stepContext<SmoothQuantParams>(rt, model, { layer: l, smoothing_strength: 0.8, mappings: sqMappings }, { stats: await capture(sqMappings, 'absmax') });
        await smoothquantStep.run(sq);
        const smoothed = await readLayerState(sq.outDir, l);
        expect(relChange(base, await forward(smoothed.tensors))).toBeLessThan(1e-5);
        const norm = sqMappings[1]!.smooth;
        expect(relChange((await src.layer(l))[`${norm}.weight`]!.data, smoothed.tensors[`${norm}.weight`]!.data)).toBeGreaterThan(0.01);

        const awqMappings = src.arch.awqMappings(cfg, l).filter((m) => shapesAllow(m, spec.linears));
        const stats = await capture(awqMappings, 'absmean');
        const awq = async (modules: AwqParams['modules']): Promise<string> => {
          const ctx = await stepContext<AwqParams>(rt, model, { layer: l, modules, mappings: awqMappings, duo_scaling: true, n_grid: 4 }, { stats, hidden });
          await awqStep.run(ctx);
          return ctx.outDir;
        };
        const folded = await readLayerState(await awq({}), l);
        expect(relChange(base, await forward(folded.tensors))).toBeLessThan(1e-5);

        const experts = spec.linears.filter((s) => s.expert !== undefined);
        if (experts.length === 0) return;
        const quantized = await readLayerState(await awq(Object.fromEntries(experts.map((s) => [s.local, { weights: W4A16_ASYM, input_activations: null }]))), l);
        expect(Object.keys(quantized.quant).sort()).toEqual(experts.map((s) => s.local).sort());
        for (const q of Object.values(quantized.quant)) expect(q.scale.data.every((v) => Number.isFinite(v) && v > 0)).toBe(true);
      } finally {
        await src.close();
      }
    });
  }
});
