// Open any model directory quantforge can evaluate: a HuggingFace checkpoint, a compressed-tensors checkpoint
// (dequantized on load) or a quantforge ONNX export. The format is recognised from the files present.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Runtime } from '../ort/session.js';
import type { Tensor } from '../tensor.js';
import { ModelConfigError, type ModelConfig } from './config.js';
import { perplexity, type PerplexityOptions, type PerplexityResult } from './perplexity.js';
import { HfSource, type WeightSource } from './source.js';
import { CompressedTensorsSource, quantizationConfigOf } from './compressed-tensors-source.js';
import { parseModelConfig, readConfigJson, readModelConfig } from './config.js';
import { OnnxModel } from './onnx-model.js';

export type ModelFormat = 'hf' | 'compressed-tensors' | 'onnx';

export interface OpenedModel {
  readonly dir: string;
  readonly format: ModelFormat;
  readonly config: ModelConfig;
  /** the weights, for formats that expose them layer by layer */
  readonly source: WeightSource | undefined;
  /** the whole-graph model, for ONNX exports */
  readonly onnx?: OnnxModel;
  perplexity(windows: Tensor<'int32'>, options?: PerplexityOptions): Promise<PerplexityResult>;
  close(): Promise<void>;
}

export function detectFormat(dir: string): ModelFormat {
  if (existsSync(join(dir, 'onnx', 'model.onnx'))) return 'onnx';
  return quantizationConfigOf(readModelConfig(dir).raw) ? 'compressed-tensors' : 'hf';
}

export async function openModel(rt: Runtime, dir: string): Promise<OpenedModel> {
  if (!existsSync(dir)) throw new ModelConfigError('missing-config', `${dir}: no such model directory`, { file: dir });
  const format = detectFormat(dir);
  if (format === 'onnx') {
    const config = parseModelConfig(readConfigJson(dir), join(dir, 'config.json'));
    const onnx = await OnnxModel.open(rt, dir, config);
    return { dir, format, config, source: undefined, onnx, perplexity: (w, o) => onnx.perplexity(w, o), close: () => onnx.close() };
  }
  const source = format === 'compressed-tensors' ? await CompressedTensorsSource.open(dir) : await HfSource.open(dir);
  return {
    dir,
    format,
    config: source.config,
    source,
    perplexity: (windows, options) => perplexity(rt, source, windows, options),
    close: () => source.close(),
  };
}
