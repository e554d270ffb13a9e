// Turning a quantizer's result into a layer state's module entry, shared by every quantizing step.

import type { QuantizedWeight } from '../algo/fake-quant.js';
import type { QuantArgs } from '../quant/scheme.js';
import { tensor } from '../tensor.js';
import type { LayerState } from './layer-state.js';
import type { ModuleQuant } from '../quant/module-quant.js';

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
