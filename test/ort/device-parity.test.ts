// Every kernel the recipes reach, recorded on the CPU provider and replayed on webgpu (a software Vulkan device
// in CI, so the smallest shapes): no kernel fails, float outputs agree, and the expected nodes run on the GPU.
// The table it prints is the one in docs/devices.md.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { family, parityTable, RecordingRuntime, replay, runRecipeText, type Comparison } from './device-parity.js';
import { parityRecipes } from './device-recipes.js';
import { describeWebgpu } from './webgpu-available.js';

/**
 * Relative tolerance per kernel family. Graphs that round activations (per-token int8 fake quant inside the
 * decoder, basic-op or fused; the W8A8 export's DynamicQuantizeLinear) flip a code where the GPU's float
 * differs from the CPU's by an ulp at a rounding tie, so their outputs move by a quantization step (measured
 * 2026-12-05: the fused decoder with int8 per-token inputs 1.4e-2, every other decoder-fused kernel under
 * 1e-4); everything else is plain fp32. The recipes record on the CPU: calibration runs the basic-op `decoder`
 * on every provider (steps/activations.ts), evaluation the fused layer, which on webgpu the layer runner replaces
 * by the basic-op `decoder` (layer-runner.ts); test/e2e/device-stages.test.ts runs both.
 */
const TOLERANCE: Record<string, number> = { decoder: 5e-2, 'decoder-fused': 5e-2, load: 5e-2 };

describeWebgpu('kernels on webgpu against cpu', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qf-device-parity-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('every recorded kernel runs on webgpu within tolerance', async () => {
    const rec = new RecordingRuntime(2);
    const cache = join(dir, 'cache');
    for (const yaml of Object.values(parityRecipes(dir, { samples: 2, seqLen: 16, windows: 1, iters: 1, nGrid: 2 }))) {
      await runRecipeText(rec, yaml, dir, cache);
    }
    await rec.close();
    const results: Comparison[] = await replay(rec.records.values(), 'webgpu');
    console.log(parityTable(results, 'webgpu'));
    const families = new Set(results.map((c) => family(c.key)));
    for (const f of ['decoder', 'decoder-fused', 'head-nll', 'head-nll-klref', 'head-nll-kl-from-ref', 'linalg.cholesky-schur', 'linalg.block-update', 'awq.candidates', 'awq.loss', 'quant.shrink', 'autoround.block', 'load']) {
      expect(families, f).toContain(f);
    }
    for (const c of results) {
      expect(c.error, c.key).toBeUndefined();
      expect(c.nonFinite, c.key).toBe(0);
      expect(c.intMismatches, c.key).toBe(0);
      expect(c.maxRel, c.key).toBeLessThan(TOLERANCE[family(c.key)] ?? 1e-4);
      // GPTQ's linear algebra is pinned to the CPU provider (host kernels); every other graph runs (mostly) on the GPU
      const onGpu = c.placements.some((p) => p.provider === 'webgpu' && !p.op.startsWith('Memcpy'));
      expect(c.provider, c.key).toBe(c.key.startsWith('linalg.') ? 'cpu' : 'webgpu');
      expect(onGpu, c.key).toBe(!c.key.startsWith('linalg.'));
    }
  });
});
