// Round-to-nearest quantization of a weight through its observer, and dynamic per-token activations.
// Source: compressed-tensors quantization/lifecycle/forward.py (fake_quantize, forward_quantize) and
// utils/helpers.py (compute_dynamic_scales_and_zp); llm-compressor QuantizationModifier for the order
// observe → calculate_qparams → quantize.
//
// W8A8 activations are quantized at inference, per token (row), symmetric: scale = max|x| / 127.5
// (clamped to fp32 eps), q = round_half_even(clamp(x / scale, −128, 127)), x̂ = q · scale. Nothing is
// stored for them; evaluation applies the same arithmetic to every Linear input.

import { observeWeight, observerKind, type ObserveOptions } from './observers.js';
import { rtnMinMax, type RtnArgs } from '../ort/kernels/rtn.js';
import { computeQParams, dequantizeWeight, fakeQuantizeWeight, FP32_EPS, qparamShape, qRange, quantizeWeight, weightMinMax } from '../quant/qparams.js';
import type { QuantArgs } from '../quant/scheme.js';

/** a quantized weight: integer codes and the qparams that map them back */
export interface QuantizedWeight {
  readonly codes: Int8Array;
  /** [scaleDims[0], scaleDims[1]] row-major */
  readonly scale: Float32Array;
  readonly zeroPoint: Int8Array;
  readonly scaleDims: readonly [number, number];
  /** (codes − zp) · scale, [rows, cols] */
  readonly dequantized: Float32Array;
  /** each input column's group (GPTQ with actorder group) */
  readonly gIdx?: Int32Array;
}

/** the onnxruntime kernel's arguments for integer min/max rtn of a tensor, row or group layout; undefined otherwise */
export function rtnKernelArgs(args: QuantArgs, cols: number): RtnArgs | undefined {
  const { strategy } = args;
  if (args.type !== 'int' || observerKind(args.observer) !== 'minmax') return undefined;
  if (strategy !== 'tensor' && strategy !== 'channel' && strategy !== 'group') return undefined;
  return { strategy, groupSize: args.group_size ?? cols, symmetric: args.symmetric, ...qRange(args.num_bits), eps: FP32_EPS };
}

/**
 * Quantize `w` [rows, cols] with `args`: observer min/max → scale and zero point → codes, groups over
 * contiguous columns (GPTQ's actorder, which needs g_idx, computes its own qparams). With a runtime, integer
 * min/max quantization runs as one onnxruntime graph (ort/kernels/rtn.ts, bitwise equal to the JavaScript).
 */
export async function quantizeWeightRtn(w: Float32Array, rows: number, cols: number, args: QuantArgs, options: ObserveOptions = {}): Promise<QuantizedWeight> {
  const scaleDims = qparamShape(rows, cols, args);
  const kernelArgs = rtnKernelArgs(args, cols);
  if (options.runtime && kernelArgs && w.length === rows * cols) return { ...(await rtnMinMax(options.runtime, w, rows, cols, kernelArgs)), scaleDims };
  const { min, max } = await observeWeight(w, rows, cols, args, options);
  const qp = computeQParams(min, max, args);
  const codes = quantizeWeight(w, rows, cols, qp, args);
  return {
    codes,
    scale: qp.scale,
    zeroPoint: qp.zeroPoint,
    scaleDims,
    dequantized: dequantizeWeight(codes, rows, cols, qp, args),
  };
}

const TOKEN_ARGS = { strategy: 'channel', group_size: null, symmetric: true } as const;

/** dynamic symmetric per-token fake quantization of activations x [rows = tokens, cols = features] */
export function fakeQuantizeActivationsPerToken(x: Float32Array, rows: number, cols: number, bits = 8): Float32Array {
  const args = { ...TOKEN_ARGS, num_bits: bits };
  const { min, max } = weightMinMax(x, rows, cols, args);
  return fakeQuantizeWeight(x, rows, cols, computeQParams(min, max, args), args);
}
