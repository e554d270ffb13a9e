// Options shared by the commands that compile a recipe (validate, plan, run, sweep).

import { resolve } from 'node:path';
import { resolveCacheDir } from '../cache/store.js';
import { DEVICES, resolveDevice, type Device, type ResolvedDevice } from '../ort/device.js';
import { intOption, stringOption, UsageError, type OptionSpec } from './command.js';

export const recipeOptions: Record<string, OptionSpec> = {
  set: { type: 'string', multiple: true },
  json: { type: 'boolean', default: false },
  'cache-dir': { type: 'string' },
  device: { type: 'string' },
  threads: { type: 'string' },
};

export const recipeHelp = [
  '  RECIPE             the recipe YAML file',
  '  --set PATH=VALUE   override a recipe value, e.g. --set stages[1].iters=50; repeatable;',
  '                     comma-separated values (stages[0].smoothing_strength=0.5,0.8) make a sweep',
  '  --cache-dir DIR    step cache (default $QUANTFORGE_CACHE or .quantforge/cache)',
  '  --device D         auto | cpu | webgpu | cuda (default: the recipe\'s device, else auto)',
  '  --threads N        onnxruntime intra-op threads (default: all cores)',
  '  --json             JSON lines on stdout (the last one is the summary)',
].join('\n');

export interface BuildOptions {
  recipe: string;
  sets: string[];
  json: boolean;
  cacheDir: string;
  device: Device | undefined;
  threads: number | undefined;
}

export function buildOptions(values: Record<string, unknown>, positionals: string[]): BuildOptions {
  const recipe = positionals[0];
  if (!recipe) throw new UsageError('a RECIPE file is required');
  const device = stringOption(values, 'device') as Device | undefined;
  if (device !== undefined && !DEVICES.includes(device)) throw new UsageError(`--device "${device}" is not one of: ${DEVICES.join(', ')}`);
  return {
    recipe: resolve(recipe),
    sets: (values['set'] as string[] | undefined) ?? [],
    json: values['json'] === true,
    cacheDir: resolve(resolveCacheDir(stringOption(values, 'cache-dir'))),
    device,
    threads: intOption(values, 'threads'),
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
