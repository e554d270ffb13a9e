// Execution-provider availability without loading onnxruntime: the CUDA provider is a shared library beside
// onnxruntime-node's binding (downloaded at install time, absent in offline installs).

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { ReasonedError } from '../diag/failure.js';
import type { Device } from '../recipe/types.js';

/** the recipe's `device` values (recipe/types.ts and the schema), which --device accepts too */
export const DEVICES: readonly Device[] = ['auto', 'cpu', 'cuda'];

function ortBinaryDir(): string | undefined {
  try {
    const pkg = createRequire(import.meta.url).resolve('onnxruntime-node/package.json');
    return join(dirname(pkg), 'bin', 'napi-v6', process.platform, process.arch);
  } catch {
    return undefined;
  }
}

/** true when the installed onnxruntime-node ships a loadable CUDA execution provider */
export function cudaAvailable(): boolean {
  const dir = ortBinaryDir();
  return dir !== undefined && existsSync(join(dir, 'libonnxruntime_providers_cuda.so'));
}

export interface ResolvedDevice {
  device: 'cpu' | 'cuda';
  /** one line for the user when `auto` fell back to CPU */
  notice?: string;
}

export class DeviceError extends ReasonedError<'device-unavailable'> {
  constructor(message: string) {
    super('device-unavailable', message);
  }
}

export function resolveDevice(requested: Device): ResolvedDevice {
  if (requested === 'cpu') return { device: 'cpu' };
  const cuda = cudaAvailable();
  if (requested === 'cuda') {
    if (!cuda) {
      throw new DeviceError(
        'device "cuda" requested but the installed onnxruntime-node has no CUDA execution provider ' +
          '(it is downloaded at install time; reinstall without ONNXRUNTIME_NODE_INSTALL=skip on a machine with CUDA). ' +
          'Use device cpu or auto.',
      );
    }
    return { device: 'cuda' };
  }
  if (cuda) return { device: 'cuda' };
  return { device: 'cpu', notice: 'no CUDA execution provider in onnxruntime-node; running on CPU' };
}
