// Round-to-nearest quantization of a weight through its observer, and the input activations at inference.
// Source: compressed-tensors quantization/lifecycle/forward.py (fake_quantize, forward_quantize) and
// utils/helpers.py (compute_dynamic_scales_and_zp, generate_gparam); llm-compressor QuantizationModifier for
// the order observe → calculate_qparams → quantize, and for NVFP4's global scale (observed on the whole weight,
// or the one shared by Linears that read the same input: llm-compressor's fused q/k/v and gate/up scales).
//
// Activations are quantized at inference with the same arithmetic as weights (quant/qparams.ts), row by row:
// dynamic per token (W8A8: scale = max|x| / 127.5, clamped to fp32 eps), dynamic per group, static per tensor
// with a calibrated scale, or NVFP4 groups under a calibrated global scale. This is the TypeScript reference
// of the graphs' activation fake-quant (graphs/act-quant.ts).

import { observeWeight, type ObserveOptions } from './observers.js';
import { observerKind } from '../quant/quant-args.js';
import { rtnMinMax, type RtnArgs } from '../ort/kernels/rtn.js';
import {
  computeQParams, dequantizeWeight, fakeQuantizeWeight, FP32_EPS, nvfp4GlobalScale, qparamShape, qRange, quantizeWeight, tensorMinMax, walk, weightMinMax, type QParams, type QuantArithArgs, type ScaleDtype,
} from '../quant/qparams.js';
import type { QuantArgs } from '../quant/scheme.js';

/** a quantized weight: element codes and the qparams that map them back */
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
  /** NVFP4: the global scale the group scales are divided by */
  readonly globalScale?: number;
  /**
   * ‖w − ŵ‖² / ‖w‖² summed in float64 in index order (steps/quantized-module.ts relativeError, the same value),
   * when the quantizer computed it on its way (the JavaScript integer path)
   */
  readonly weightError?: number;
}

export interface RtnOptions extends ObserveOptions {
  /** NVFP4: the global scale to use (shared by fused Linears); default the weight's own */
  readonly globalScale?: number;
  /** the dtype the checkpoint stores the scales in (the weight's); default float32 */
  readonly scaleDtype?: ScaleDtype;
}

/** NVFP4's global scale of `w` (generate_gparam over the whole weight); undefined for other strategies */
export function weightGlobalScale(w: Float32Array, args: Pick<QuantArgs, 'strategy'>): number | undefined {
  if (args.strategy !== 'tensor_group') return undefined;
  const { min, max } = tensorMinMax(w);
  return nvfp4GlobalScale(min, max);
}

/** the onnxruntime kernel's arguments for integer min/max rtn of a tensor, row or group layout; undefined otherwise */
export function rtnKernelArgs(args: QuantArgs, cols: number): RtnArgs | undefined {
  const { strategy } = args;
  if (args.type !== 'int' || observerKind(args.observer) !== 'minmax') return undefined;
  if (strategy !== 'tensor' && strategy !== 'channel' && strategy !== 'group') return undefined;
  return { strategy, groupSize: args.group_size ?? cols, symmetric: args.symmetric, ...qRange(args.num_bits), eps: FP32_EPS };
}

/**
 * Weights with fewer values than this quantize in JavaScript even when a runtime is given: below it, building
 * the onnxruntime graph for a new shape costs more than the arithmetic it replaces, and each shape of a small
 * model is seen only once per layer (bench/rtn.ts measures both paths; both are bitwise equal).
 */
export const RTN_KERNEL_MIN_VALUES = 1 << 19;

/**
 * Quantize `w` [rows, cols] with `args`: observer min/max → scales (and zero points) → codes, groups over
 * contiguous columns (GPTQ's actorder, which needs g_idx, computes its own qparams). With a runtime, integer
 * min/max quantization of weights of at least RTN_KERNEL_MIN_VALUES values runs as one onnxruntime graph
 * (ort/kernels/rtn.ts, bitwise equal to the JavaScript) when the scales are stored as float32.
 */
export async function quantizeWeightRtn(w: Float32Array, rows: number, cols: number, args: QuantArgs, options: RtnOptions = {}): Promise<QuantizedWeight> {
  const kernelArgs = rtnKernelArgs(args, cols);
  // the graph keeps float32 scales; scales stored as bf16/fp16 are rounded before the codes in the JavaScript
  const float32Scales = (options.scaleDtype ?? 'float32') === 'float32';
  if (options.runtime && kernelArgs && float32Scales && w.length === rows * cols && w.length >= RTN_KERNEL_MIN_VALUES) {
    return { ...(await rtnMinMax(options.runtime, w, rows, cols, kernelArgs)), scaleDims: qparamShape(rows, cols, args) };
  }
  return quantizeWeightRtnJs(w, rows, cols, args, options);
}

/** quantizeWeightRtn in JavaScript only (quant/qparams.ts), whatever the size */
export async function quantizeWeightRtnJs(w: Float32Array, rows: number, cols: number, args: QuantArgs, options: RtnOptions = {}): Promise<QuantizedWeight> {
  const scaleDims = qparamShape(rows, cols, args);
  const { min, max } = await observeWeight(w, rows, cols, args, options);
  const qp = computeQParams(min, max, args, options.globalScale ?? weightGlobalScale(w, args), options.scaleDtype);
  const { codes, dequantized, weightError } = quantizeDequantize(w, rows, cols, qp, args);
  return {
    ...(weightError === undefined ? {} : { weightError }),
    codes,
    scale: qp.scale,
    zeroPoint: qp.zeroPoint,
    scaleDims,
    dequantized,
    ...(qp.globalScale === undefined ? {} : { globalScale: qp.globalScale }),
  };
}

const TOKEN_ARGS = { strategy: 'channel', group_size: null, symmetric: true } as const;

/** dynamic symmetric per-token fake quantization of activations x [rows = tokens, cols = features] */
export function fakeQuantizeActivationsPerToken(x: Float32Array, rows: number, cols: number, bits = 8): Float32Array {
  const args = { ...TOKEN_ARGS, num_bits: bits };
  const { min, max } = weightMinMax(x, rows, cols, args);
  return fakeQuantizeWeight(x, rows, cols, computeQParams(min, max, args), args);
}

/** the calibrated ranges of static input quantization: FP8's per-tensor scale, NVFP4's global scale */
export interface StaticInputScales {
  readonly inputScale?: number;
  readonly inputGlobalScale?: number;
}

/** fake quantization of activations x [rows = tokens, cols = features] with input args `a` */
export function fakeQuantizeActivations(x: Float32Array, rows: number, cols: number, a: QuantArgs, statics: StaticInputScales = {}): Float32Array {
  // a token is a weight row: per-token scales are per-channel ones, groups and NVFP4 groups the same
  const args = { ...a, strategy: a.strategy === 'token' ? 'channel' : a.strategy } as const;
  if (a.strategy === 'tensor') {
    if (statics.inputScale === undefined) throw new Error('static per-tensor input quantization needs its calibrated input_scale');
    const qp: QParams = { scale: Float32Array.of(statics.inputScale), zeroPoint: new Int8Array(1) };
    return fakeQuantizeWeight(x, rows, cols, qp, args);
  }
  if (a.strategy === 'tensor_group' && statics.inputGlobalScale === undefined) throw new Error('NVFP4 input quantization needs its calibrated input_global_scale');
  const { min, max } = weightMinMax(x, rows, cols, args);
  return fakeQuantizeWeight(x, rows, cols, computeQParams(min, max, args, statics.inputGlobalScale), args);
}

/**
 * NVFP4 global scales of one layer's Linears, shared as llm-compressor shares them (update_fused_layer_weight_
 * global_scales): Linears that read the same input (q/k/v, gate/up: one fused GEMM in vLLM) all take the
 * smallest of their global scales when every one of them is NVFP4 (tensor_group); otherwise each keeps its own.
 * `siblings` lists the Linears of each input (every Linear of the layer, quantized or not).
 */
export function sharedGlobalScales(modules: Readonly<Record<string, { weight: Float32Array; args: QuantArgs }>>, siblings: readonly (readonly string[])[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const [local, m] of Object.entries(modules)) {
    const g = weightGlobalScale(m.weight, m.args);
    if (g !== undefined) out.set(local, g);
  }
  for (const group of siblings) {
    if (group.length < 2 || !group.every((l) => out.has(l))) continue;
    const shared = Math.min(...group.map((l) => out.get(l) as number));
    for (const l of group) out.set(l, shared);
  }
  return out;
}

const f = Math.fround;

/** 1.5 · 2^52: x + ROUNDER − ROUNDER rounds x (|x| < 2^51) to an integer, ties to even (IEEE's default rounding) */
const ROUNDER = 6755399441055744;

/** the runs of consecutive columns that share a scale column, as [start, end, group] triples */
function columnRuns(colGroup: Int32Array): Int32Array {
  const runs: number[] = [];
  for (let c = 0; c < colGroup.length; c++) {
    const g = colGroup[c] as number;
    if (c > 0 && g === colGroup[c - 1]) runs[runs.length - 2] = c + 1;
    else runs.push(c, c + 1, g);
  }
  return Int32Array.from(runs);
}

/**
 * Integer codes and the dequantized weight in one pass: quantizeWeight then dequantizeWeight (quant/qparams.ts)
 * fused for integer elements, the path every int round-to-nearest takes in JavaScript, without the element's
 * per-value callbacks. The same arithmetic op for op, so both outputs are bitwise the two-pass form's:
 *   1. v = fp32(fp32(w / s) + zp)              (s the effective scale of w's slice, zp its zero point)
 *   2. q = roundHalfEven(clamp(v, qmin, qmax))  (an int8 code)
 *   3. ŵ = fp32((q − zp) · s)                   with q read as the stored int8, so a code of −0 is 0
 * Example (int4 symmetric, s = 0.5, zp = 0): w = 1.25 → v = 2.5 → q = 2 (half to even) → ŵ = 1.
 * Each row is walked run by run of columns that share a scale (a whole row, a group, a block's width; single
 * columns under a scattered g_idx), so a run's scale and zero point are read once. The walk visits the values
 * in index order, so it sums the relative error ‖w − ŵ‖² / ‖w‖² as relativeError does (integer elements only).
 */
export function quantizeDequantize(
  w: Float32Array,
  rows: number,
  cols: number,
  qp: QParams,
  args: QuantArithArgs,
  gIdx?: Int32Array,
): { codes: Int8Array; dequantized: Float32Array; weightError?: number } {
  const k = walk(w.length, rows, cols, qp, args, gIdx);
  if (k.element.kind !== 'int') {
    const codes = quantizeWeight(w, rows, cols, qp, args, gIdx);
    return { codes, dequantized: dequantizeWeight(codes, rows, cols, qp, args, gIdx) };
  }
  const { qmin, qmax } = k.element;
  const { scale, zeroPoint, groups, rowsPer } = k;
  const runs = columnRuns(k.colGroup);
  const codes = new Int8Array(w.length);
  const out = new Float32Array(w.length);
  let num = 0;
  let den = 0;
  for (let r = 0; r < rows; r++) {
    const base = Math.floor(r / rowsPer) * groups;
    const row = r * cols;
    for (let n = 0; n < runs.length; n += 3) {
      const j = base + (runs[n + 2] as number);
      const s = scale[j] as number;
      const z = zeroPoint[j] as number;
      const end = row + (runs[n + 1] as number);
      for (let i = row + (runs[n] as number); i < end; i++) {
        const a = w[i] as number;
        const v = f(f(a / s) + z);
        // clamp (NaN stays NaN), then round half to even; | 0: the int8 the code array stores (NaN → 0, −0 → 0)
        const x = v < qmin ? qmin : v > qmax ? qmax : v;
        const code = (x + ROUNDER - ROUNDER) | 0;
        const b = f((code - z) * s);
        codes[i] = code;
        out[i] = b;
        const d = a - b;
        num += d * d;
        den += a * a;
      }
    }
  }
  return { codes, dequantized: out, weightError: den === 0 ? 0 : num / den };
}
