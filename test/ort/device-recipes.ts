// Tiny recipes that together reach every kernel family: GPTQ (float64 linear algebra), AWQ (candidate
// losses), SmoothQuant + W8A8 RTN with the MSE observer (shrink kernel, per-token activation fake quant),
// AutoRound (forward + backward), the FP/quantized evaluation heads (NLL, KL) and the ONNX export
// (MatMulNBits, MatMulInteger) scored by evaluate-onnx.

const head = (samples: number, seqLen: number): string =>
  `quantforge: 1\nmodel: { example: tiny, seed: 0 }\ncalibration: { dataset: "model:calib.txt", samples: ${samples}, seq_len: ${seqLen} }\n`;
const evaluate = (seqLen: number, windows: number, kl: boolean): string =>
  `evaluate:\n  perplexity: { dataset: "model:eval.txt", seq_len: ${seqLen}, max_windows: ${windows} }\n  kl: ${kl}\n`;

export function parityRecipes(outDir: string, o: { samples?: number; seqLen?: number; windows?: number; iters?: number } = {}): Record<string, string> {
  const s = o.samples ?? 4;
  const t = o.seqLen ?? 32;
  const w = o.windows ?? 2;
  return {
    gptq: `${head(s, t)}stages:\n  - { kind: gptq, scheme: W4A16, targets: [Linear], ignore: [lm_head] }\n${evaluate(t, w, false)}outputs:\n  - { format: onnx, path: ${outDir}/gptq-onnx, accuracy_level: 0 }\n`,
    awq: `${head(s, t)}stages:\n  - { kind: awq, scheme: W4A16_ASYM, duo_scaling: both, n_grid: 4, targets: [Linear], ignore: [lm_head] }\n`,
    smoothquant: `${head(s, t)}stages:\n  - { kind: smoothquant, smoothing_strength: 0.8 }\n  - { kind: rtn, scheme: W8A8, observer: mse, targets: [Linear], ignore: [lm_head] }\n${evaluate(t, w, true)}outputs:\n  - { format: onnx, path: ${outDir}/w8a8-onnx }\n`,
    autoround: `${head(s, t)}stages:\n  - { kind: autoround, iters: ${o.iters ?? 2}, batch_size: 2, scheme: W4A16, targets: [Linear], ignore: [lm_head] }\n`,
  };
}
