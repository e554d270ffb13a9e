// Options shared by the commands that compile a recipe (validate, plan, run, sweep).

import { resolve } from 'node:path';
import { DEVICES, resolveDevice, type ResolvedDevice } from '../ort/device.js';
import type { ImportInputs } from '../recipe/llm-compressor/adopt.js';
import type { Device } from '../recipe/types.js';
import { intOption, stringOption, UsageError, type OptionSpec } from './command.js';
import { storeChoice, storeHelp, storeOptions, type StoreChoice } from './store-options.js';

export const recipeOptions: Record<string, OptionSpec> = {
  set: { type: 'string', multiple: true },
  json: { type: 'boolean', default: false },
  ...storeOptions,
  device: { type: 'string' },
  threads: { type: 'string' },
  model: { type: 'string' },
  dataset: { type: 'string' },
  'output-dir': { type: 'string' },
};

export const recipeHelp = [
  '  RECIPE             the recipe YAML file',
  '  --set PATH=VALUE   override a recipe value, e.g. --set stages[1].iters=50; repeatable;',
  '                     comma-separated values (stages[0].smoothing_strength=0.5,0.8) make a sweep',
  storeHelp,
  '  --device D         auto | cpu | webgpu | cuda (default: the recipe\'s device, else auto)',
  '  --threads N        onnxruntime intra-op threads (default: all cores)',
  '  --json             JSON lines on stdout (the last one is the summary)',
  '  --model DIR        with an llm-compressor RECIPE (converted in memory): the Hugging Face model directory',
  '  --dataset FILE     with an llm-compressor RECIPE: the calibration text or JSONL file',
  '  --output-dir DIR   with an llm-compressor RECIPE: write a compressed-tensors checkpoint there',
].join('\n');

export interface BuildOptions {
  recipe: string;
  sets: string[];
  json: boolean;
  /** the step store, and the local directory (the store, or its read-through copy) */
  store: StoreChoice;
  cacheDir: string;
  device: Device | undefined;
  threads: number | undefined;
  /** --model, --dataset, --output-dir: what an llm-compressor recipe does not say */
  inputs: ImportInputs;
}

export function buildOptions(values: Record<string, unknown>, positionals: string[]): BuildOptions {
  const recipe = positionals[0];
  if (!recipe) throw new UsageError('a RECIPE file is required');
  const device = stringOption(values, 'device') as Device | undefined;
  if (device !== undefined && !DEVICES.includes(device)) throw new UsageError(`--device "${device}" is not one of: ${DEVICES.join(', ')}`);
  const store = storeChoice(values);
  return {
    recipe: resolve(recipe),
    sets: (values['set'] as string[] | undefined) ?? [],
    json: values['json'] === true,
    store,
    cacheDir: store.cacheDir,
    device,
    threads: intOption(values, 'threads'),
    inputs: { model: stringOption(values, 'model'), dataset: stringOption(values, 'dataset'), outputDir: stringOption(values, 'output-dir') },
  };
}

/**
 * the execution provider of a run: --device, else the recipe's, else auto. Throws DeviceError (exit 2, before
 * any compute) when an explicitly requested provider cannot run here.
 */
export function runDevice(flag: Device | undefined, recipe: Device): ResolvedDevice {
  return resolveDevice(flag ?? recipe);
}

/** --device of eval and generate, resolved */
export function deviceOption(values: Record<string, unknown>): ResolvedDevice {
  const device = stringOption(values, 'device') ?? 'auto';
  if (!DEVICES.includes(device as Device)) throw new UsageError(`--device "${device}" is not one of: ${DEVICES.join(', ')}`);
  return resolveDevice(device as Device);
}
