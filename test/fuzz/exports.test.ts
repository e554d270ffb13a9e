// Fuzzing the readers of quantforge's own outputs (targets/exports.ts): tampered compressed-tensors
// checkpoints and ONNX exports end in ok or a named error naming the file; the counterexamples fuzzing found
// are replayed as named regressions.

import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { SafetensorsFile, writeSafetensors } from '../../src/formats/safetensors.js';
import { CompressedTensorsSource } from '../../src/model/compressed-tensors-source.js';
import { NonFiniteWeightError } from '../../src/model/finite.js';
import type { Tensor } from '../../src/tensor.js';
import { formatOutcomes, runFuzz, runOnce } from './harness.js';
import { compressedTensorsTarget, microExports, onnxTarget, type CtCase, type OnnxMutation } from './targets/exports.js';

describe('fuzz: compressed-tensors and ONNX readers', () => {
  test('compressed-tensors: every tampered checkpoint ends in ok or a named error naming the file', async () => {
    const report = await runFuzz(compressedTensorsTarget);
    console.log(`${report.target}: ${report.runs} cases in ${report.seconds.toFixed(1)} s: ${formatOutcomes(report.outcomes)}`);
    expect(report.outcomes.get('ok') ?? 0).toBeGreaterThan(0);
    // every named error is a malformed input or recipe: the CLI exits 2 for it, never 1 (a failed step)
    expect(report.exits.get(1) ?? 0).toBe(0);
  });

  test('onnx: every tampered export ends in ok or a named error naming the file', async () => {
    const report = await runFuzz(onnxTarget);
    console.log(`${report.target}: ${report.runs} cases in ${report.seconds.toFixed(1)} s: ${formatOutcomes(report.outcomes)}`);
    expect(report.outcomes.get('ok') ?? 0).toBeGreaterThan(0);
    // every named error is a malformed input or recipe: the CLI exits 2 for it, never 1 (a failed step)
    expect(report.exits.get(1) ?? 0).toBe(0);
  });
});

// counterexamples fuzzing found (seed 20250015) against the readers as they were, each fixed in src. Before
// the fix, 353 of the first 1,000 compressed-tensors cases ended in an unnamed PackError, QuantShapeError,
// TypeError ("Cannot read properties of undefined"), TargetError or a plain Error, and the failed open left
// the checkpoint's file handles to the garbage collector (DEP0137).
const CT_REGRESSIONS: Record<string, { input: CtCase; outcome: string }> = {
  'weight_packed reshaped to a scalar (was PackError "packed has 1 values but [32, 4] needs 128")': {
    input: { checkpoint: 0, config: [], tensors: [{ kind: 'reshape', tensor: 1, dims: [] }] },
    outcome: 'quantized-tensor-invalid',
  },
  'a config group that is a string (was TypeError "g.targets.some is not a function")': {
    input: { checkpoint: 1, config: [{ kind: 'set-path', keys: ['quantization_config', 'config_groups', 'group_0'], value: 'Linear' }], tensors: [] },
    outcome: 'quantization-config-invalid',
  },
  'an ignore pattern that is not a regex (was TargetError without the file)': {
    input: { checkpoint: 0, config: [{ kind: 'set-path', keys: ['quantization_config', 'ignore'], value: ['re:('] }], tensors: [] },
    outcome: 'quantization-config-invalid',
  },
  'num_bits "float" (was PackError "num_bits float cannot be packed")': {
    input: { checkpoint: 2, config: [{ kind: 'set-path', keys: ['quantization_config', 'config_groups', 'group_0', 'weights', 'num_bits'], value: 'float' }], tensors: [] },
    outcome: 'quantization-config-invalid',
  },
};

const ONNX_REGRESSIONS: Record<string, { input: OnnxMutation[]; outcome: string }> = {
  // bench/fuzz.ts at 10,000 cases (path 1545:0): one KV-cache feed per config.json layer, 10^15 of them, was an
  // out-of-memory before the first forward (and so was the first version of the KV-cache check)
  'config.json num_hidden_layers 10^15 against a 2-layer export': {
    input: [{ kind: 'config', key: 'num_hidden_layers', value: 1e15 }],
    outcome: 'onnx-config-mismatch',
  },
  // the perplexity head was built for config.json's vocabulary: a multi-line OrtRunError without the file
  'config.json vocab_size 1 against a 512-token export': {
    input: [{ kind: 'config', key: 'vocab_size', value: 1 }, { kind: 'config', key: 'eos_token_id', value: 0 }],
    outcome: 'onnx-config-mismatch',
  },
};

describe('fuzz regressions: compressed-tensors and ONNX readers', () => {
  for (const [name, { input, outcome }] of Object.entries(CT_REGRESSIONS)) {
    test(name, async () => expect(await runOnce(compressedTensorsTarget, input)).toBe(outcome));
  }
  for (const [name, { input, outcome }] of Object.entries(ONNX_REGRESSIONS)) {
    test(name, async () => expect(await runOnce(onnxTarget, input)).toBe(outcome));
  }

  test('a NaN weight_scale is a non-finite weight named with its module and layer (it used to load as NaN weights)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qf-ct-nan-'));
    try {
      cpSync((await microExports()).compressedTensors.asym, dir, { recursive: true });
      const f = await SafetensorsFile.open(join(dir, 'model.safetensors'));
      const tensors: [string, Tensor][] = [];
      for (const n of f.names()) tensors.push([n, await f.read(n)]);
      await f.close();
      const scale = tensors.find(([n]) => n === 'model.layers.1.mlp.up_proj.weight_scale')![1];
      (scale.data as Float32Array)[3] = Number.NaN;
      await writeSafetensors(join(dir, 'model.safetensors'), tensors);
      const src = await CompressedTensorsSource.open(dir);
      try {
        await src.layer(0);
        const err = (await src.layer(1).catch((e: unknown) => e)) as NonFiniteWeightError;
        expect(err).toBeInstanceOf(NonFiniteWeightError);
        expect(err.layer).toBe(1);
        expect(err.message).toContain('model.layers.1.mlp.up_proj.weight (layer 1, module mlp.up_proj)');
      } finally {
        await src.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
