// Choosing the execution provider: auto's order and its reasons, one-line errors for a missing provider,
// the words for what is missing, and the device union agreeing across the schema, the recipe types and ort.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { DEVICES, DeviceError, resolveDevice, type Checker } from '../../src/ort/device.js';
import { explainCudaFailure, explainWebgpuFailure, type Provider, type ProviderCheck } from '../../src/ort/probe.js';
import type { Device as RecipeDevice } from '../../src/recipe/types.js';
import type { KeyRecord } from '../../src/cache/key.js';

/** a checker answering from a table: provider (+ ':hw' for the hardware-only WebGPU probe) → detail or ok */
function checker(table: Record<string, string | true>): Checker & { calls: string[] } {
  const calls: string[] = [];
  const fn = (provider: Provider, options: { hardwareOnly?: boolean } = {}): ProviderCheck => {
    const key = `${provider}${options.hardwareOnly ? ':hw' : ''}`;
    calls.push(key);
    const a = table[key] ?? 'not in the table';
    return { provider, ok: a === true, detail: a === true ? 'ok' : a, ms: 0 };
  };
  return Object.assign(fn, { calls });
}

describe('resolveDevice', () => {
  test('cpu needs no probe', () => {
    const c = checker({});
    expect(resolveDevice('cpu', c)).toEqual({ device: 'cpu' });
    expect(c.calls).toEqual([]);
  });

  test('auto takes cuda first when it runs', () => {
    const c = checker({ cuda: true, 'webgpu:hw': true });
    expect(resolveDevice('auto', c).device).toBe('cuda');
    expect(c.calls).toEqual(['cuda']);
  });

  test('auto takes a hardware WebGPU adapter when cuda is missing, and says why', () => {
    const r = resolveDevice('auto', checker({ cuda: 'no CUDA provider', 'webgpu:hw': true }));
    expect(r.device).toBe('webgpu');
    expect(r.notice).toContain('cuda: no CUDA provider');
  });

  test('auto falls back to cpu and names what each GPU provider lacks', () => {
    const c = checker({ cuda: 'no CUDA provider', 'webgpu:hw': 'no hardware Vulkan adapter', webgpu: true });
    const r = resolveDevice('auto', c);
    expect(r).toEqual({ device: 'cpu', notice: 'device auto: cpu (cuda: no CUDA provider; webgpu: no hardware Vulkan adapter)' });
    // a software Vulkan adapter is never auto's choice, so the any-adapter probe is not even asked
    expect(c.calls).toEqual(['cuda', 'webgpu:hw']);
  });

  test('webgpu runs on any adapter, software included', () => {
    expect(resolveDevice('webgpu', checker({ webgpu: true, 'webgpu:hw': 'no hardware Vulkan adapter' }))).toEqual({ device: 'webgpu' });
  });

  test('an unavailable webgpu is a one-line DeviceError naming what is missing', () => {
    const detail = 'no Vulkan adapter: the Vulkan loader found no driver';
    let error: unknown;
    try {
      resolveDevice('webgpu', checker({ webgpu: detail }));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(DeviceError);
    expect((error as DeviceError).reason).toBe('device-unavailable');
    expect((error as DeviceError).message).toBe(`device "webgpu" is not available: ${detail}. Use device cpu or auto.`);
    expect((error as DeviceError).message).not.toContain('\n');
  });

  test('an unavailable cuda says how to get it', () => {
    expect(() => resolveDevice('cuda', checker({ cuda: 'onnxruntime-node has no CUDA provider' }))).toThrow(
      /device "cuda" is not available: onnxruntime-node has no CUDA provider; to get it: ONNXRUNTIME_NODE_INSTALL=cuda12 node \S+script\/install\.js/,
    );
  });
});

describe('what a failed probe is missing', () => {
  const adapterError = 'webgpu_context.cc:136 ... Failed to get a WebGPU adapter: No supported adapters';

  test('no Vulkan driver at all', () => {
    const stderr = 'Warning: vkCreateInstance: Found no drivers!\nWarning: vkCreateInstance failed with VK_ERROR_INCOMPATIBLE_DRIVER';
    expect(explainWebgpuFailure(adapterError, stderr)).toMatch(/^no Vulkan adapter: the Vulkan loader found no driver/);
  });

  test('drivers but no device, and the hardware-only probe', () => {
    const stderr = 'Error: Loader Message: setup_loader_term_phys_devs:  Failed to detect any valid GPUs in the current config';
    expect(explainWebgpuFailure(adapterError, stderr)).toBe('no Vulkan adapter: the installed Vulkan drivers found no device');
    expect(explainWebgpuFailure(adapterError, stderr, true)).toMatch(/^no hardware Vulkan adapter/);
  });

  test('a driver Dawn refuses (Mesa 22.3)', () => {
    const stderr = 'Warning: Vulkan shaderUniformBufferArrayDynamicIndexing required';
    expect(explainWebgpuFailure(adapterError, stderr)).toMatch(/Dawn refused the driver .*shaderUniformBufferArrayDynamicIndexing required.*Mesa ≥ 25 works/);
  });

  test('the CUDA provider missing a CUDA library', () => {
    const error = 'Failed to load library libonnxruntime_providers_cuda.so with error: libcublasLt.so.12: cannot open shared object file: No such file or directory';
    expect(explainCudaFailure(error, '')).toBe('the CUDA provider cannot load libcublasLt.so.12 (install CUDA 12 and cuDNN 9)');
  });
});

describe('the device union', () => {
  test('the recipe schema, the recipe types, the cache key and src/ort agree', () => {
    const schema = JSON.parse(readFileSync(join(import.meta.dirname, '../../schema/recipe.schema.json'), 'utf8')) as {
      properties: { device: { enum: string[] } };
    };
    expect(schema.properties.device.enum).toEqual([...DEVICES]);
    // compile-time: the recipe's Device and the key's device are the same unions as ort's
    const recipe: readonly RecipeDevice[] = DEVICES;
    const key: readonly NonNullable<KeyRecord['device']>[] = DEVICES.filter((d): d is Exclude<typeof d, 'auto'> => d !== 'auto');
    expect(recipe.length).toBe(4);
    expect(key).toEqual(['cpu', 'webgpu', 'cuda']);
  });
});
