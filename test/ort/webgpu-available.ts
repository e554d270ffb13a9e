// WebGPU tests need a Vulkan device (CI: Mesa lavapipe, installed by .ci/run). They skip on a machine
// without one, and fail instead of skipping when QUANTFORGE_REQUIRE_WEBGPU=1 (CI), so a CI image that lost its
// Vulkan driver cannot pass by skipping them.

import { describe, test } from 'vitest';
import { checkProvider } from '../../src/ort/probe.js';

export const webgpu = checkProvider('webgpu');

export function describeWebgpu(name: string, body: () => void): void {
  if (webgpu.ok) {
    describe(name, body);
    return;
  }
  if (process.env['QUANTFORGE_REQUIRE_WEBGPU'] === '1') {
    describe(name, () => {
      test('needs a WebGPU adapter', () => {
        throw new Error(`QUANTFORGE_REQUIRE_WEBGPU=1 but webgpu cannot run here: ${webgpu.detail}`);
      });
    });
    return;
  }
  describe.skip(name, body);
}
