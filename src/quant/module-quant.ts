// A quantized Linear as stored between steps and written to checkpoints: the compressed-tensors args it was
// quantized with (`ModuleQuant`: what a stage assigns to a module and a layer state's quant.json records),
// and with them its integer codes and qparams as tensors.

import type { QuantArgs } from './scheme.js';
import type { Tensor } from '../tensor.js';

export interface ModuleQuant {
  weights: QuantArgs;
  input_activations: QuantArgs | null;
}

export interface QuantizedModule extends ModuleQuant {
  /** [out, in] */
  codes: Tensor<'int8'>;
  /** [out, groups]; [out, 1] for channel */
  scale: Tensor<'float32'>;
  /** asymmetric only, same shape as scale */
  zeroPoint?: Tensor<'int8'>;
  /** actorder group: each input column's group */
  gIdx?: Tensor<'int32'>;
  /** GGUF schemes: each block's stored qparams, [out, blocks, width] (quant/gguf-weight.ts) */
  gguf?: Tensor<'int16'>;
}
