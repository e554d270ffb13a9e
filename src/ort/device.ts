// The execution provider a run uses. `device` is what the user asked for (recipe `device:` or --device);
// `resolveDevice` turns it into a Provider that can run here, or a DeviceError (one line naming what is
// missing) before any compute. `auto` takes cuda, then a hardware WebGPU adapter, then cpu, and says why.
// A software Vulkan device (Mesa lavapipe, SwiftShader) runs WebGPU on the CPU, far slower than the CPU
// provider, so `auto` never picks it; `device: webgpu` does.

import { ReasonedError } from '../diag/failure.js';
import type { Device } from '../recipe/types.js';
import { checkProvider, ortPaths, type Provider, type ProviderCheck } from './probe.js';

export type { Provider } from './probe.js';

/** the recipe's `device` values (recipe/types.ts and the schema), which --device accepts too */
export const DEVICES: readonly Device[] = ['auto', 'cpu', 'webgpu', 'cuda'];
/** the execution providers a device resolves to */
export const PROVIDERS: readonly Provider[] = DEVICES.filter((d): d is Provider => d !== 'auto');

export interface ResolvedDevice {
  device: Provider;
  /** one line for the user when `auto` chose: the provider and why the ones before it were passed over */
  notice?: string;
}

export class DeviceError extends ReasonedError<'device-unavailable'> {}

/** the command that downloads the CUDA provider into the installed onnxruntime-node (needs internet) */
export function cudaInstallCommand(): string {
  const script = ortPaths() ? ortPaths()!.entry.replace(/dist[/\\]index\.js$/, 'script/install.js') : 'node_modules/onnxruntime-node/script/install.js';
  return `ONNXRUNTIME_NODE_INSTALL=cuda12 node ${script}`;
}

export type Checker = (provider: Provider, options?: { hardwareOnly?: boolean }) => ProviderCheck;

/** the provider for `requested`; throws DeviceError when an explicitly requested one cannot run here */
export function resolveDevice(requested: Device, check: Checker = checkProvider): ResolvedDevice {
  if (requested === 'cpu') return { device: 'cpu' };
  if (requested !== 'auto') {
    const c = check(requested);
    if (!c.ok) {
      const hint = requested === 'cuda' ? `; to get it: ${cudaInstallCommand()} (CUDA 12 + cuDNN 9 needed)` : '';
      throw new DeviceError('device-unavailable', `device "${requested}" is not available: ${c.detail}${hint}. Use device cpu or auto.`);
    }
    return { device: requested };
  }
  const cuda = check('cuda');
  if (cuda.ok) return { device: 'cuda', notice: 'device auto: cuda (a CUDA device answered)' };
  const webgpu = check('webgpu', { hardwareOnly: true });
  if (webgpu.ok) return { device: 'webgpu', notice: `device auto: webgpu (${webgpu.detail}; cuda: ${cuda.detail})` };
  return { device: 'cpu', notice: `device auto: cpu (cuda: ${cuda.detail}; webgpu: ${webgpu.detail})` };
}
