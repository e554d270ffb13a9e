// `quantforge example`: write the synthetic example model (a HF directory) for offline experiments.

import { existsSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { ExampleSize } from '../recipe/types.js';
import { intOption, stringOption, UsageError, type Command } from './command.js';
import { progressLine } from './progress-line.js';

export const exampleCommand: Command = {
  name: 'example',
  summary: 'write the synthetic example model (Llama architecture, planted outlier channels) and its text',
  usage: 'quantforge example [DIR] [--size tiny|100m|1b] [--dtype f32|bf16] [--seed N] [--force]',
  help: [
    '  DIR                output directory (default ./example-model)',
    '  --size S           tiny (~3 M parameters, default), 100m or 1b',
    '  --dtype D          f32 (default) or bf16 weights',
    '  --seed N           generator seed (default 0)',
    '  --force            replace DIR if it exists',
  ].join('\n'),
  options: {
    size: { type: 'string', default: 'tiny' },
    dtype: { type: 'string', default: 'f32' },
    seed: { type: 'string' },
    force: { type: 'boolean', default: false },
  },
  allowPositionals: 1,
  async run({ values, positionals }, io) {
    const { Runtime } = await import('../ort/session.js');
    const { writeExampleModel } = await import('../steps/example-model.js');
    const { EXAMPLE_SIZES } = await import('../model/example-model.js');
    const size = stringOption(values, 'size') as ExampleSize;
    if (!EXAMPLE_SIZES.includes(size)) throw new UsageError(`--size "${size}" is not one of: ${EXAMPLE_SIZES.join(', ')}`);
    const dtype = stringOption(values, 'dtype');
    if (dtype !== 'f32' && dtype !== 'bf16') throw new UsageError(`--dtype "${dtype}" is not one of: f32, bf16`);
    const seed = intOption(values, 'seed', 0) ?? 0;
    const dir = resolve(positionals[0] ?? 'example-model');
    if (existsSync(dir) && !values['force']) throw new UsageError(`${dir} exists; pass --force to replace it`);
    const tmp = `${dir}.tmp-${process.pid}`;
    const rt = new Runtime({ device: 'cpu' });
    const progress = progressLine(io, `example ${size}`);
    try {
      const cfg = await writeExampleModel(rt, tmp, { size, seed, dtype, onProgress: progress.update });
      progress.done();
      await rm(dir, { recursive: true, force: true });
      await rename(tmp, dir);
      io.out(`wrote ${dir}: ${cfg.numLayers} layers, hidden ${cfg.hiddenSize}, vocab ${cfg.vocabSize}, ${dtype}; calib.txt and eval.txt beside it`);
      return { code: 0 };
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      throw e;
    } finally {
      await rt.close();
    }
  },
};
