// A quantforge ONNX export (onnx/model.onnx + model.onnx_data) that onnxruntime cannot load or run, or that
// disagrees with its config.json: named with the file, for `eval` and `generate` on a damaged export.

import { InputError, type OrtReason } from '../diag/failure.js';

export class OnnxModelError extends InputError<Extract<OrtReason, 'onnx-load-failed' | 'onnx-config-mismatch' | 'onnx-run-failed' | 'non-finite-output'>> {}
