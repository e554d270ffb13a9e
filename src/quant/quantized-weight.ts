// A quantized Linear as stored between steps and written to checkpoints: integer codes with their qparams,
// plus the compressed-tensors args that produced them.

import type { QuantArgs } from './scheme.js';
import type { Tensor } from '../tensor.js';

export interface ModuleQuant {
  weights: QuantArgs;
  input_activations: QuantArgs | null;
}

export interface QuantizedWeight {
  /** [out, in] */
  codes: Tensor<'int8'>;
  /** [out, groups]; [out, 1] for channel */
  scale: Tensor<'float32'>;
  /** asymmetric only, same shape as scale */
  zeroPoint?: Tensor<'int8'>;
  /** actorder group: each input column's group */
  gIdx?: Tensor<'int32'>;
}

export type QuantizedModule = ModuleQuant & QuantizedWeight;
