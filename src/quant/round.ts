// Round half to even ("banker's rounding"), the rounding of torch.round, numpy.rint and ONNX Round.
// Source: compressed-tensors quantization/quant_args.py (round_to_quantized_type uses torch.round).
//
// Quantization must never use Math.round: it rounds ties toward +∞ (Math.round(2.5) = 3,
// Math.round(-2.5) = -2), which biases codes upward and breaks bit-exactness with compressed-tensors.
// Ties go to the even neighbour instead: 0.5 → 0, 1.5 → 2, 2.5 → 2, -2.5 → -2. The sign of zero is
// kept as torch keeps it (-0.4 → -0).

/** the integer nearest to `x`, ties to the even one */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  // Math.round took a tie upward onto an odd integer: step back to the even one
  if (r - x === 0.5 && r % 2 !== 0) return r - 1;
  return r;
}

/** round every element of `x` half to even, into `out` (a new array when omitted) */
export function roundHalfEvenArray(x: Float32Array, out: Float32Array = new Float32Array(x.length)): Float32Array {
  if (out.length !== x.length) {
    throw new RangeError(`roundHalfEvenArray: output has ${out.length} elements, expected ${x.length} (the input's)`);
  }
  for (let i = 0; i < x.length; i++) out[i] = roundHalfEven(x[i] as number);
  return out;
}
