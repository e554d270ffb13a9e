// A quantized Linear as stored between steps and written to checkpoints: the compressed-tensors args it was
// quantized with (`ModuleQuant`: what a stage assigns to a module and a layer state's quant.json records),
// and with them its element codes and qparams as tensors. `ActQuant` says which Linears of a layer have their
// inputs fake-quantized, and how: what a decoder graph needs to evaluate the quantized model.

import type { QuantArgs } from './quant-args.js';
import type { Tensor } from '../tensor.js';

export interface ModuleQuant {
  weights: QuantArgs;
  input_activations: QuantArgs | null;
}

export interface QuantizedModule extends ModuleQuant {
  /** [out, in] element codes (element.ts: integers, fp8 bytes as int8, fp4 nibbles) */
  codes: Tensor<'int8'>;
  /** [out, groups]; [out, 1] for channel, [row blocks, col blocks] for block; NVFP4: the fp8 group scales */
  scale: Tensor<'float32'>;
  /** asymmetric only, same shape as scale */
  zeroPoint?: Tensor<'int8'>;
  /** actorder group: each input column's group */
  gIdx?: Tensor<'int32'>;
  /** NVFP4 (tensor_group) only: [1], what the fp8 group scales are divided by */
  globalScale?: Tensor<'float32'>;
  /** GGUF schemes: each block's stored qparams, [out, blocks, width] (quant/gguf-weight.ts) */
  gguf?: Tensor<'int16'>;
}

/**
 * Linears (local name) whose input activations are fake-quantized, with their input args. Static ranges are
 * layer tensors beside the weights: `<local>.input_scale` (FP8) and `<local>.input_global_scale` (NVFP4).
 */
export type ActQuant = ReadonlyMap<string, QuantArgs>;

/** the static tensors an input quantization reads, by suffix: fp8 per-tensor scale or NVFP4 global scale */
export function staticInputTensor(a: QuantArgs): 'input_scale' | 'input_global_scale' | undefined {
  if (a.strategy === 'tensor_group') return 'input_global_scale';
  return a.dynamic === false ? 'input_scale' : undefined;
}

/** a memo key for graphs built with `aq` (different activation quantization: a different graph) */
export function actQuantKey(aq: ActQuant | undefined): string {
  if (!aq) return '';
  return [...aq].map(([local, a]) => `${local}:${a.type}${a.num_bits}/${a.strategy}/${a.group_size ?? ''}/${String(a.dynamic)}`).join(',');
}

/** the input quantization of every module of `quant` that has one */
export function actQuantOf(quant: Readonly<Record<string, ModuleQuant>>): Map<string, QuantArgs> {
  const out = new Map<string, QuantArgs>();
  for (const [m, q] of Object.entries(quant)) if (q.input_activations) out.set(m, q.input_activations);
  return out;
}
