// Fuzzing the readers of quantforge's own outputs (targets/exports.ts): tampered compressed-tensors
// checkpoints and ONNX exports end in ok or a named error naming the file.

import { describe, expect, test } from 'vitest';
import { formatOutcomes, runFuzz } from './harness.js';
import { compressedTensorsTarget, onnxTarget } from './targets/exports.js';

describe('fuzz: compressed-tensors and ONNX readers', () => {
  test('compressed-tensors: every tampered checkpoint ends in ok or a named error naming the file', async () => {
    const report = await runFuzz(compressedTensorsTarget);
    console.log(`${report.target}: ${report.runs} cases in ${report.seconds.toFixed(1)} s: ${formatOutcomes(report.outcomes)}`);
    expect(report.outcomes.get('ok') ?? 0).toBeGreaterThan(0);
  });

  test('onnx: every tampered export ends in ok or a named error naming the file', async () => {
    const report = await runFuzz(onnxTarget);
    console.log(`${report.target}: ${report.runs} cases in ${report.seconds.toFixed(1)} s: ${formatOutcomes(report.outcomes)}`);
    expect(report.outcomes.get('ok') ?? 0).toBeGreaterThan(0);
  });
});
