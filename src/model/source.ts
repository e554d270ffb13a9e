// A WeightSource hands out a model's weights one decoder layer at a time (float32), whatever stores them: a
// HuggingFace directory, a compressed-tensors directory (dequantized on load), or a base model overlaid with
// the layer states a recipe's steps produced.

import type { Tensor } from '../tensor.js';
import { archFor, type ArchAdapter } from './arch.js';
import { openCheckpoint, type Checkpoint } from './checkpoint.js';
import { readModelConfig, type ModelConfig } from './config.js';
import { checkFiniteWeight, scanFinite } from './finite.js';
import { checkModelDir } from './model-check.js';
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

/** every tensor of decoder layer `l` by local name, read one at a time through `src.tensor` */
export async function readLayer(src: Pick<WeightSource, 'arch' | 'config' | 'tensor'>, l: number): Promise<Record<string, Tensor<'float32'>>> {
  const prefix = src.arch.layerPrefix(l);
  const out: Record<string, Tensor<'float32'>> = {};
  for (const name of src.arch.layerTensors(src.config, l)) out[stripPrefix(prefix, name)] = await src.tensor(name);
  return out;
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
    checkModelDir(dir, config, archFor(config), options);
    return new HfSource(dir, config, await openCheckpoint(dir));
  }

  async tensor(name: string): Promise<Tensor<'float32'>> {
    const t = await this.checkpoint.readAs(name, 'float32');
    if (scanFinite(t.data).first >= 0) checkFiniteWeight(t, { name, file: (await this.checkpoint.info(name)).file });
    return t;
  }

  layer(l: number): Promise<Record<string, Tensor<'float32'>>> {
    return readLayer(this, l);
  }

  actQuant(): ActQuant {
    return new Map();
  }

  async close(): Promise<void> {
    await this.checkpoint.close();
  }
}
