// Absolute anchors for the e2e method tests: each method's perplexity on the test's own windows may exceed
// fp32's by at most 1.5× the excess measured when the bound was set (plus 0.1% for numerical noise across
// onnxruntime builds; a method measured below fp32 on these windows gets 1.001). "Better than rtn" alone passes a bug that degrades every method together; this does
// not. The measured ratios are in each test file, with where they were measured; the full evaluation files
// are compared with the independent torch reference in bench/accuracy.ts (BENCHMARKS.md).

import { expect } from 'vitest';

/** the largest quantized/fp ratio a test accepts for a method measured at `measured` */
export function anchorBound(measured: number): number {
  return 1 + 1.5 * Math.max(measured - 1, 0) + 0.001;
}

export function expectAnchored(label: string, ppl: { fp: number; quantized: number }, measured: number): void {
  const ratio = ppl.quantized / ppl.fp;
  expect(ratio, `${label}: quantized/fp ${ratio.toFixed(5)}, measured ${measured}, bound ${anchorBound(measured).toFixed(5)}`).toBeLessThanOrEqual(anchorBound(measured));
}
