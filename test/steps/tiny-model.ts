// The tiny example model (planted outlier channels) as a fixture for step tests: written into a temp root,
// its calibration text cut into windows and embedded as the first decoder layer's inputs. Plus the StepContext
// for running a StepImpl directly and the comparisons the step tests share.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rmsNorm } from '../../src/graphs/decoder-graph.js';
import { embed } from '../../src/model/embed.js';
import { writeExampleModel } from '../../src/steps/example-model.js';
import { HfSource } from '../../src/model/source.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { cutWindows, readDatasetText } from '../../src/model/windows.js';
import { Graph } from '../../src/ort/graph.js';
import type { Runtime } from '../../src/ort/session.js';
import { writeHidden } from '../../src/steps/activations.js';
import type { StepContext } from '../../src/steps/types.js';
import { tensor, type Tensor } from '../../src/tensor.js';

export interface TinyModel {
  /** temp directory holding the model and every artifact a test writes; removed by `close` */
  root: string;
  modelDir: string;
  /** the embedded calibration windows, [windows, seqLen, hidden] */
  embedded: Tensor<'float32'>;
  /** `embedded` written as a hidden-state artifact directory */
  embedDir: string;
  /** layer 0's float tensors as the model stores them */
  layer0: Record<string, Tensor<'float32'>>;
  close(): Promise<void>;
}

export async function writeTinyModel(rt: Runtime, name: string, windows: number, seqLen: number): Promise<TinyModel> {
  const root = await mkdtemp(join(tmpdir(), `qf-${name}-`));
  const modelDir = join(root, 'model');
  await writeExampleModel(rt, modelDir, { size: 'tiny', seed: 0, dtype: 'f32' });
  const src = await HfSource.open(modelDir);
  try {
    const ids = cutWindows(loadTokenizer(modelDir).encode(readDatasetText(join(modelDir, 'calib.txt'))), seqLen, windows);
    const [n, T] = ids.dims as [number, number];
    const embedded = tensor('float32', [n, T, src.config.hiddenSize], embed(await src.tensor(src.arch.embedding), ids.data));
    return {
      root,
      modelDir,
      embedded,
      embedDir: await hiddenDir(root, embedded),
      layer0: await src.layer(0),
      close: () => rm(root, { recursive: true, force: true }),
    };
  } finally {
    await src.close();
  }
}

/** a hidden-state artifact directory under `root` holding `h` */
export async function hiddenDir(root: string, h: Tensor<'float32'>): Promise<string> {
  const dir = await mkdtemp(join(root, 'hidden-'));
  await writeHidden(dir, h);
  return dir;
}

export interface ContextOptions {
  id?: string;
  progress?: StepContext<unknown>['progress'];
  warn?: StepContext<unknown>['warn'];
}

/** a StepContext with a fresh output directory; `inputs` maps each role to an artifact directory (undefined: absent) */
export async function stepContext<P>(rt: Runtime, tiny: TinyModel, params: P, inputs: Record<string, string | undefined>, options: ContextOptions = {}): Promise<StepContext<P>> {
  const outDir = await mkdtemp(join(tiny.root, 'step-'));
  const ins: StepContext<P>['inputs'] = {};
  for (const [role, dir] of Object.entries(inputs)) if (dir) ins[role] = { id: role, kind: role, dir, result: null };
  return {
    id: options.id ?? 'test',
    params,
    inputs: ins,
    files: {},
    modelDir: tiny.modelDir,
    outDir,
    runtime: rt,
    progress: options.progress ?? (() => {}),
    warn: options.warn ?? (() => {}),
    signal: new AbortController().signal,
  };
}

/** ‖a − b‖ / ‖a‖ */
export function relChange(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  a.forEach((v, i) => {
    num += (v - (b[i] as number)) ** 2;
    den += v * v;
  });
  return Math.sqrt(num / den);
}

/** the model's logits for last-layer hidden states `x`: final norm, then lm_head */
export async function finalLogits(rt: Runtime, src: HfSource, x: Tensor<'float32'>): Promise<Float32Array> {
  const cfg = src.config;
  const kernel = await rt.kernel(`test.logits:${cfg.hiddenSize}:${cfg.vocabSize}`, () => {
    const g = new Graph('logits');
    const h = g.input('x', 'float32', ['B', 'T', cfg.hiddenSize]);
    const norm = g.input('norm', 'float32', [cfg.hiddenSize]);
    const lm = g.input('lm', 'float32', [cfg.vocabSize, cfg.hiddenSize]);
    g.output(g.matmul(rmsNorm(g, h, norm, cfg.rmsNormEps), g.transpose(lm, [1, 0])), 'logits');
    return g;
  });
  const out = await kernel.run({ x, norm: await src.tensor(src.arch.finalNorm), lm: await src.tensor(src.arch.lmHeadWeight(cfg)) });
  return out['logits']!.data as Float32Array;
}
