// Turning a quantizer's result into a layer state's module entry, shared by every quantizing step; GGUF
// modules (their stored block type at their width) and their entries; the weight and output errors steps report.

import type { QuantizedWeight } from '../algo/fake-quant.js';
import type { QuantArgs } from '../quant/scheme.js';
import { tensor, type Tensor } from '../tensor.js';
import { rowQuadForms } from '../ort/kernels/linalg.js';
import type { Runtime } from '../ort/session.js';
import type { LayerState } from './layer-state.js';
import type { ModuleQuant } from '../quant/module-quant.js';
import { GGUF_ARGS, ggufTypeOf, storedBlockType } from '../quant/gguf-scheme.js';
import type { GgufBlockTypeName } from '../quant/gguf-quantize.js';
import { GGML_TYPES } from '../quant/gguf-types.js';
import { codeSteps, qparamWidth, type GgufWeight } from '../quant/gguf-weight.js';
import { resolveQuantArgs } from '../quant/scheme.js';

/** store `q` for module `local` of `state`: dequantized weight for the forward, codes and qparams for packing */
export function setQuantized(state: LayerState, local: string, rows: number, cols: number, q: QuantizedWeight, module: ModuleQuant): void {
  state.tensors[`${local}.weight`] = tensor('float32', [rows, cols], q.dequantized);
  const args: QuantArgs = module.weights;
  state.quant[local] = {
    ...module,
    codes: tensor('int8', [rows, cols], q.codes),
    scale: tensor('float32', q.scaleDims, q.scale),
    ...(args.symmetric ? {} : { zeroPoint: tensor('int8', q.scaleDims, q.zeroPoint) }),
    ...(q.gIdx ? { gIdx: tensor('int32', [cols], q.gIdx) } : {}),
    ...(q.globalScale === undefined ? {} : { globalScale: tensor('float32', [1], Float32Array.of(q.globalScale)) }),
  };
}

/**
 * relative output errors of quantized versions of W [rows, cols] over the inputs whose Gram is h: for each Q,
 * tr(D·H·Dᵀ) / tr(W·H·Wᵀ) with D = W − Q (outputErrorSums); 0 where the energy is 0
 */
export async function outputErrorRatios(rt: Runtime, w: Float32Array, rows: number, cols: number, h: Tensor<'float64'>, quantized: readonly Float32Array[]): Promise<number[]> {
  const [energy, ...errors] = (await outputErrorSums(rt, w, rows, cols, h, quantized)) as [number, ...number[]];
  return errors.map((e) => (energy > 0 ? e / energy : 0));
}

/**
 * [tr(W·H·Wᵀ), then tr(D·H·Dᵀ) for D = W − Q of each Q in `quantized`], the forms summed in float64 in one pass
 * over H (rows of W and every D interleaved, about 2^22 values per call)
 */
export async function outputErrorSums(rt: Runtime, w: Float32Array, rows: number, cols: number, h: Tensor<'float64'>, quantized: readonly Float32Array[]): Promise<number[]> {
  const subs = [undefined, ...quantized];
  const k = subs.length;
  const sums: number[] = subs.map(() => 0);
  const chunk = k * Math.max(1, Math.floor(2 ** 22 / (k * Math.max(cols, 1))));
  const total = k * rows;
  for (let r0 = 0; r0 < total; r0 += chunk) {
    const m = Math.min(chunk, total - r0);
    const d = new Float64Array(m * cols);
    for (let i = 0; i < m; i++) {
      const r = Math.floor((r0 + i) / k);
      const sub = subs[(r0 + i) % k];
      const out = d.subarray(i * cols, (i + 1) * cols);
      for (let c = 0; c < cols; c++) out[c] = (w[r * cols + c] as number) - (sub ? (sub[r * cols + c] as number) : 0);
    }
    const q = await rowQuadForms(rt, tensor('float64', [m, cols], d), h);
    q.forEach((v, i) => (sums[(r0 + i) % k] = (sums[(r0 + i) % k] as number) + v));
  }
  return sums;
}

/** ‖a − b‖² / ‖a‖² */
export function relativeError(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = (a[i] as number) - (b[i] as number);
    num += d * d;
    den += (a[i] as number) * (a[i] as number);
  }
  return den === 0 ? 0 : num / den;
}

/**
 * A GGUF module at its width: the block type it is stored in (llama.cpp's fallback when the asked one does
 * not fit its rows) with args saying so, or `skip` (no block fits: the weight stays unquantized). Undefined
 * for compressed-tensors args.
 */
export function ggufModule(module: ModuleQuant, cols: number): { type: GgufBlockTypeName; module: ModuleQuant; note?: string } | { skip: string } | undefined {
  const wanted = ggufTypeOf(module.weights);
  if (wanted === undefined) return undefined;
  const { type, reason } = storedBlockType(wanted, cols);
  if (type === undefined) return { skip: reason as string };
  const weights = type === wanted ? module.weights : resolveQuantArgs({ ...GGUF_ARGS[type], observer: module.weights.observer }, `GGUF_${type}.weights`);
  return { type, module: { ...module, weights }, ...(reason === undefined ? {} : { note: reason }) };
}

/** store a GGUF-quantized weight: dequantized values, codes as the blocks store them, each block's stored qparams */
export function setQuantizedGguf(state: LayerState, local: string, q: GgufWeight, module: ModuleQuant): void {
  const { rows, cols } = q;
  const group = module.weights.group_size as number;
  state.tensors[`${local}.weight`] = tensor('float32', [rows, cols], q.dequantized);
  const blocks = cols / GGML_TYPES[q.type].blockSize;
  state.quant[local] = {
    ...module,
    codes: tensor('int8', [rows, cols], q.codes),
    scale: tensor('float32', [rows, cols / group], codeSteps(q, group)),
    gguf: tensor('int16', [rows, blocks, qparamWidth(q.type)], q.qparams),
  };
}
