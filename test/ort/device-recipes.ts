// Tiny recipes that together reach every kernel family: GPTQ (float64 linear algebra, XᵀX taps), AWQ
// (candidate weights and losses), SmoothQuant + W8A8 RTN with the MSE observer (shrink kernel, per-token
// activation fake quant), AutoRound (forward + autodiff backward), the FP/quantized evaluation heads (NLL,
// KL) and the ONNX exports (MatMulNBits; DynamicQuantizeLinear + MatMulInteger) scored by evaluate-onnx.

export interface ParitySizes {
  samples?: number;
  seqLen?: number;
  windows?: number;
  iters?: number;
  nGrid?: number;
  /** example model size (tiny: hidden 256, 4 layers) */
  size?: 'tiny' | '100m' | '1b';
}

export function parityRecipes(outDir: string, o: ParitySizes = {}): Record<string, string> {
  const s = o.samples ?? 4;
  const t = o.seqLen ?? 32;
  const w = o.windows ?? 2;
  const head = `quantforge: 1\nmodel: { example: ${o.size ?? 'tiny'}, seed: 0 }\ncalibration: { dataset: "model:calib.txt", samples: ${s}, seq_len: ${t} }\n`;
  const evaluate = (kl: boolean): string => `evaluate:\n  perplexity: { dataset: "model:eval.txt", seq_len: ${t}, max_windows: ${w} }\n  kl: ${kl}\n`;
  return {
    gptq: `${head}stages:\n  - { kind: gptq, scheme: W4A16, targets: [Linear], ignore: [lm_head] }\n${evaluate(false)}outputs:\n  - { format: onnx, path: ${outDir}/gptq-onnx, accuracy_level: 0 }\n`,
    awq: `${head}stages:\n  - { kind: awq, scheme: W4A16_ASYM, duo_scaling: both, n_grid: ${o.nGrid ?? 4}, targets: [Linear], ignore: [lm_head] }\n`,
    smoothquant: `${head}stages:\n  - { kind: smoothquant, smoothing_strength: 0.8 }\n  - { kind: rtn, scheme: W8A8, observer: mse, targets: [Linear], ignore: [lm_head] }\n${evaluate(true)}outputs:\n  - { format: onnx, path: ${outDir}/w8a8-onnx }\n`,
    autoround: `${head}stages:\n  - { kind: autoround, iters: ${o.iters ?? 2}, batch_size: 2, scheme: W4A16, targets: [Linear], ignore: [lm_head] }\n`,
  };
}
