// `quantforge doctor`: what this machine offers onnxruntime — versions, the execution providers the installed
// onnxruntime-node knows, whether each one runs here (child-process probes, see src/ort/probe.ts), the Vulkan
// drivers and devices behind WebGPU, the NVIDIA GPUs behind CUDA, and what `device: auto` would choose.

import type { Command } from './command.js';
import { UsageError, stringOption } from './command.js';

export const doctorCommand: Command = {
  name: 'doctor',
  summary: 'versions, execution providers and GPUs available here, and how to get CUDA',
  usage: 'quantforge doctor [--device D] [--json]',
  help: [
    '  --device D         also exit 2 unless D (auto | cpu | webgpu | cuda) can run here',
    '  --json             print one JSON object',
  ].join('\n'),
  options: { device: { type: 'string' }, json: { type: 'boolean', default: false } },
  allowPositionals: 0,
  async run({ values }, io) {
    const { ortBuild } = await import('../ort/session.js');
    const { DEVICES, cudaInstallCommand, resolveDevice } = await import('../ort/device.js');
    const { checkProvider } = await import('../ort/probe.js');
    const { nvidiaGpus, vulkanDevices, vulkanDrivers } = await import('../ort/vulkan.js');
    const { VERSION } = await import('../version.js');
    const wanted = stringOption(values, 'device');
    if (wanted !== undefined && !DEVICES.includes(wanted as never)) throw new UsageError(`--device "${wanted}" is not one of: ${DEVICES.join(', ')}`);

    const build = ortBuild();
    // probed afresh (not recalled from an earlier process): doctor reports what is true now, and refreshes the memo
    const cuda = checkProvider('cuda', { fresh: true });
    const webgpu = checkProvider('webgpu', { fresh: true });
    const hardware = webgpu.ok ? checkProvider('webgpu', { hardwareOnly: true, fresh: true }) : webgpu;
    const auto = resolveDevice('auto');
    const drivers = vulkanDrivers();
    const devices = vulkanDevices();
    const gpus = nvidiaGpus();
    const software = drivers.filter((d) => d.software).map((d) => d.name.replace(/ \(.*/, ''));
    const webgpuLine = webgpu.ok
      ? hardware.ok
        ? 'ok: a hardware Vulkan adapter'
        : `ok, but only on a software Vulkan adapter${software.length ? ` (${software.join(', ')})` : ''}: slower than cpu, so auto skips it; --device webgpu uses it`
      : `missing: ${webgpu.detail}`;
    const report = {
      quantforge: VERSION,
      node: process.version,
      platform: `${process.platform} ${process.arch}`,
      onnxruntime_node: build.version,
      providers_built: build.providers,
      cpu: 'ok',
      webgpu: { ok: webgpu.ok, hardware: hardware.ok, detail: webgpuLine, probe_ms: Math.round(webgpu.ms) },
      vulkan_drivers: drivers.map((d) => ({ manifest: d.manifest, library: d.library, name: d.name })),
      vulkan_devices: devices ?? null,
      cuda: { ok: cuda.ok, detail: cuda.ok ? 'ok' : `missing: ${cuda.detail}`, install: cudaInstallCommand() },
      nvidia_gpus: gpus ?? null,
      auto: { device: auto.device, why: auto.notice ?? '' },
    };
    if (values['json']) io.out(JSON.stringify(report));
    else {
      io.out(`quantforge ${VERSION}, node ${process.version} (${report.platform}), onnxruntime-node ${build.version}`);
      io.out(`providers in this onnxruntime-node: ${build.providers.map((p) => `${p.name}${p.bundled ? '' : ' (not bundled: downloaded at install time)'}`).join(', ')}`);
      io.out('');
      io.out('cpu      ok');
      io.out(`webgpu   ${webgpuLine}`);
      io.out(`         Vulkan drivers: ${drivers.length === 0 ? 'none' : drivers.map((d) => `${d.name} (${d.library})`).join('; ')}`);
      io.out(`         Vulkan devices: ${devices === undefined ? 'install vulkaninfo (Debian: vulkan-tools) to list them by name' : devices.length === 0 ? 'none' : devices.map((d) => `${d.name} [${d.type}]`).join('; ')}`);
      io.out(`cuda     ${cuda.ok ? 'ok' : `missing: ${cuda.detail}`}`);
      if (gpus) io.out(`         NVIDIA GPUs: ${gpus.length === 0 ? 'none' : gpus.join('; ')}`);
      if (!cuda.ok) {
        io.out('         to get the CUDA provider (needs internet, an NVIDIA driver, CUDA 12 and cuDNN 9):');
        io.out(`           ${cudaInstallCommand()}`);
      }
      io.out('');
      io.out(auto.notice ?? `device auto: ${auto.device}`);
    }
    if (wanted && wanted !== 'auto' && !(wanted === 'cpu' || (wanted === 'webgpu' ? webgpu.ok : cuda.ok))) {
      io.err(`quantforge doctor: device "${wanted}" cannot run here`);
      return { code: 2 };
    }
    return { code: 0 };
  },
};
