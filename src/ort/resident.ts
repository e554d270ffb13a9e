// Tensors that stay where a kernel left them. On WebGPU a kernel created with `keep` outputs leaves them in
// GPU buffers (onnxruntime-node's preferredOutputLocation 'gpu-buffer'), and any other kernel of the same
// process takes them as inputs without a trip through host memory. On the CPU and CUDA providers a Resident
// is a host tensor: onnxruntime-node 1.30 binds device memory for WebGPU only.
//
// Facts of onnxruntime-node 1.30 this file works around: a 'gpu-buffer' tensor cannot be read from
// JavaScript (`getData()`/`download` is "not implemented" and throws a C++ exception that aborts the
// process), so reading one back means running it through a kernel whose output lands on the host
// (Runtime.download); a disposed one fails to feed with "Tensor.location is not supported".

import type * as ort from 'onnxruntime-node';
import type { DType } from '../tensor.js';

const values = new WeakMap<Resident, ort.Tensor>();

export class Resident {
  readonly dtype: DType;
  readonly dims: readonly number[];
  /** true when the data lives in device memory (a WebGPU buffer) rather than on the host */
  readonly onDevice: boolean;
  #disposed = false;

  constructor(value: ort.Tensor) {
    this.dtype = (value.type === 'uint16' ? 'float16' : value.type) as DType;
    this.dims = [...value.dims];
    this.onDevice = value.location === 'gpu-buffer';
    values.set(this, value);
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** frees the device buffer now instead of at garbage collection */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    values.get(this)?.dispose();
    values.delete(this);
  }
}

/** the onnxruntime tensor behind `r`, for src/ort only */
export function ortValueOf(r: Resident): ort.Tensor {
  const v = values.get(r);
  if (!v) throw new Error(`a ${r.dtype}[${r.dims.join(', ')}] resident tensor was used after dispose()`);
  return v;
}
