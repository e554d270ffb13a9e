// What the machine offers the WebGPU provider, in words, for `quantforge doctor`: the Vulkan drivers the loader
// would consider (ICD manifests), and the devices by name when `vulkaninfo` (Debian: vulkan-tools) is
// installed. Dawn, inside onnxruntime, does not report the adapter it picked, so this is the nearest answer.

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';

export interface VulkanDriver {
  manifest: string;
  library: string;
  /** a known driver's name, e.g. "Mesa lavapipe" */
  name: string;
  software: boolean;
}

export interface VulkanDevice {
  name: string;
  type: string;
  driver?: string;
}

const KNOWN: readonly [RegExp, string, boolean][] = [
  [/lvp/, 'Mesa lavapipe (software, runs on the CPU)', true],
  [/swiftshader/, 'SwiftShader (software, runs on the CPU)', true],
  [/radeon/, 'Mesa RADV (AMD)', false],
  [/intel_hasvk/, 'Mesa hasvk (Intel gen 7/8)', false],
  [/intel/, 'Mesa ANV (Intel)', false],
  [/nvidia/i, 'NVIDIA', false],
  [/nouveau/, 'Mesa NVK (NVIDIA, nouveau)', false],
  [/virtio/, 'Mesa venus (virtio-gpu)', false],
  [/gfxstream/, 'gfxstream (emulator)', false],
  [/freedreno|turnip/, 'Mesa turnip (Qualcomm Adreno)', false],
  [/panfrost|panvk/, 'Mesa PanVK (Arm Mali)', false],
  [/asahi/, 'Mesa Honeykrisp (Apple)', false],
  [/dozen|dzn/, 'Mesa dozen (D3D12)', false],
];

const ICD_DIRS = ['/etc/vulkan/icd.d', '/usr/local/share/vulkan/icd.d', '/usr/share/vulkan/icd.d'];

/** ICD manifests the Vulkan loader reads: VK_DRIVER_FILES / VK_ICD_FILENAMES when set, else the standard folders */
export function vulkanDrivers(env: NodeJS.ProcessEnv = process.env): VulkanDriver[] {
  const override = env['VK_DRIVER_FILES'] ?? env['VK_ICD_FILENAMES'];
  const files = override
    ? override.split(':').filter((f) => f && existsSync(f))
    : ICD_DIRS.filter((d) => existsSync(d)).flatMap((d) => readdirSync(d).filter((f) => f.endsWith('.json')).map((f) => join(d, f)));
  const out: VulkanDriver[] = [];
  for (const file of files) {
    let library = '?';
    try {
      library = (JSON.parse(readFileSync(file, 'utf8')) as { ICD?: { library_path?: string } }).ICD?.library_path ?? '?';
    } catch {
      // an unreadable manifest is listed with an unknown library
    }
    const known = KNOWN.find(([re]) => re.test(basename(library)) || re.test(basename(file)));
    out.push({ manifest: file, library, name: known?.[1] ?? 'unknown driver', software: known?.[2] ?? false });
  }
  return out;
}

/** devices from `vulkaninfo --summary`, or undefined when vulkaninfo is not installed */
export function vulkanDevices(): VulkanDevice[] | undefined {
  const r = spawnSync('vulkaninfo', ['--summary'], { encoding: 'utf8', timeout: 30_000 });
  if (r.error || typeof r.stdout !== 'string') return undefined;
  const devices: VulkanDevice[] = [];
  let current: Partial<VulkanDevice> | undefined;
  for (const line of r.stdout.split('\n')) {
    if (/^GPU\d+:/.test(line.trim())) {
      if (current?.name) devices.push(current as VulkanDevice);
      current = {};
    }
    const m = /^\s*(deviceName|deviceType|driverName)\s*=\s*(.+)$/.exec(line);
    if (m && current) {
      if (m[1] === 'deviceName') current.name = m[2]!.trim();
      else if (m[1] === 'deviceType') current.type = m[2]!.trim().replace(/^PHYSICAL_DEVICE_TYPE_/, '').toLowerCase();
      else current.driver = m[2]!.trim();
    }
  }
  if (current?.name) devices.push(current as VulkanDevice);
  return devices;
}

/** NVIDIA GPUs from `nvidia-smi` (name, driver version, memory), or undefined when it is not installed */
export function nvidiaGpus(): string[] | undefined {
  const r = spawnSync('nvidia-smi', ['--query-gpu=name,driver_version,memory.total', '--format=csv,noheader'], { encoding: 'utf8', timeout: 30_000 });
  if (r.error || r.status !== 0 || typeof r.stdout !== 'string') return undefined;
  return r.stdout.split('\n').map((l) => l.trim()).filter(Boolean);
}
