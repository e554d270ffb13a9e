// A WeightSource hands out a model's weights one decoder layer at a time (float32), whatever stores them: a
// HuggingFace directory, a compressed-tensors directory (dequantized on load), or a base model overlaid with
// the layer states a recipe's steps produced.

import type { Tensor } from '../tensor.js';
import { archFor, type ArchAdapter } from './arch.js';
import { openCheckpoint, type Checkpoint } from './checkpoint.js';
import { readModelConfig, type ModelConfig } from './config.js';
import { ReasonedError } from '../diag/failure.js';
import type { ActQuant } from '../quant/module-quant.js';

export interface WeightSource {
  readonly dir: string;
  readonly config: ModelConfig;
  readonly arch: ArchAdapter;
  /** a tensor outside the decoder layers (embedding, final norm, lm head), float32 */
  tensor(name: string): Promise<Tensor<'float32'>>;
  /** every tensor of decoder layer `l` by local name (`self_attn.q_proj.weight`), float32 */
  layer(l: number): Promise<Record<string, Tensor<'float32'>>>;
  /** Linears of layer `l` whose inputs are fake-quantized per token at inference (local name → bits) */
  actQuant(l: number): ActQuant;
  close(): Promise<void>;
}

export function stripPrefix(prefix: string, name: string): string {
  return name.startsWith(prefix) ? name.slice(prefix.length) : name;
}

/** a plain HuggingFace model directory */
export class HfSource implements WeightSource {
  readonly dir: string;
  readonly config: ModelConfig;
  readonly arch: ArchAdapter;
  readonly checkpoint: Checkpoint;

  private constructor(dir: string, config: ModelConfig, checkpoint: Checkpoint) {
    this.dir = dir;
    this.config = config;
    this.arch = archFor(config);
    this.checkpoint = checkpoint;
  }

  /** `quantized`: a compressed-tensors checkpoint, whose Linear weights are stored packed (not checked here) */
  static async open(dir: string, options: { quantized?: boolean } = {}): Promise<HfSource> {
    const config = readModelConfig(dir);
    const source = new HfSource(dir, config, await openCheckpoint(dir));
    if (!options.quantized) source.#checkTensors();
    return source;
  }

  #checkTensors(): void {
    const required = [this.arch.embedding, this.arch.finalNorm, this.arch.lmHeadWeight(this.config)];
    for (let l = 0; l < this.config.numLayers; l++) required.push(...this.arch.layerTensors(this.config, l));
    const missing = required.filter((n) => !this.checkpoint.has(n));
    if (missing.length > 0) {
      const more = missing.length > 5 ? ` and ${missing.length - 5} more` : '';
      throw new ReasonedError('missing-tensor', `${this.dir}: checkpoint lacks tensors the config implies: ${missing.slice(0, 5).join(', ')}${more}`);
    }
  }

  tensor(name: string): Promise<Tensor<'float32'>> {
    return this.checkpoint.readAs(name, 'float32');
  }

  async layer(l: number): Promise<Record<string, Tensor<'float32'>>> {
    const prefix = this.arch.layerPrefix(l);
    const out: Record<string, Tensor<'float32'>> = {};
    for (const name of this.arch.layerTensors(this.config, l)) out[stripPrefix(prefix, name)] = await this.tensor(name);
    return out;
  }

  actQuant(): ActQuant {
    return new Map();
  }

  async close(): Promise<void> {
    await this.checkpoint.close();
  }
}
