// The compressed-tensors reader on the float schemes' checkpoints (micro exports: FP8 with input_scale,
// FP8_BLOCK, NVFP4, MXFP4A16): each reads back, and the strict checks (quantization_config fields, every
// stored tensor's dtype and shape, scalar scales) name config.json or the safetensors file and the field.

import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { SafetensorsFile, writeSafetensors } from '../../src/formats/safetensors.js';
import { CompressedTensorsSource } from '../../src/model/compressed-tensors-source.js';
import { tensor, type Tensor } from '../../src/tensor.js';
import { writeMicroExports, type MicroExports } from '../fixtures/micro-exports.js';

let root: string;
let exports: MicroExports;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'qf-ct-float-'));
  exports = await writeMicroExports(join(root, 'exports'));
}, 300_000);

afterAll(() => rmSync(root, { recursive: true, force: true }));

type Kind = 'fp8' | 'fp8block' | 'nvfp4' | 'mxfp4';

/** the layers of checkpoint `kind`, after `tamper` changed a copy of its config and tensors; the error if any */
async function readBack(kind: Kind, tamper: { config?: (q: Record<string, any>) => void; tensors?: (t: Map<string, Tensor>) => void } = {}): Promise<{ layers?: Record<string, Tensor<'float32'>>[]; error?: any }> {
  const dir = mkdtempSync(join(root, `${kind}-`));
  cpSync(exports.compressedTensors[kind], dir, { recursive: true });
  if (tamper.config) {
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, any>;
    tamper.config(cfg['quantization_config']);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  }
  if (tamper.tensors) {
    const f = await SafetensorsFile.open(join(dir, 'model.safetensors'));
    const tensors = new Map<string, Tensor>();
    for (const n of f.names()) tensors.set(n, await f.read(n));
    await f.close();
    tamper.tensors(tensors);
    await writeSafetensors(join(dir, 'model.safetensors'), [...tensors]);
  }
  try {
    const src = await CompressedTensorsSource.open(dir);
    try {
      const layers = [];
      for (let l = 0; l < src.config.numLayers; l++) layers.push(await src.layer(l));
      return { layers };
    } finally {
      await src.close();
    }
  } catch (error) {
    return { error };
  }
}

const Q = 'model.layers.0.self_attn.q_proj';

describe('compressed-tensors float checkpoints read back', () => {
  test('FP8, FP8_BLOCK, NVFP4 and MXFP4A16 read back as finite float32 layers; static input ranges join the layer', async () => {
    for (const kind of ['fp8', 'fp8block', 'nvfp4', 'mxfp4'] as const) {
      const { layers, error } = await readBack(kind);
      expect(error, kind).toBeUndefined();
      const w = layers![0]!['self_attn.q_proj.weight']!;
      expect(w.dtype).toBe('float32');
      expect([...w.data].every(Number.isFinite)).toBe(true);
      expect([...w.data].some((v) => v !== 0)).toBe(true);
    }
    expect((await readBack('fp8')).layers![0]!['self_attn.q_proj.input_scale']!.dims).toEqual([1]);
    expect((await readBack('nvfp4')).layers![0]!['self_attn.q_proj.input_global_scale']!.dims).toEqual([1]);
  });
});

describe('the strict checks apply to the float schemes', () => {
  const cases: [string, Kind, Parameters<typeof readBack>[1], string, string][] = [
    ['fp8 weight stored as bfloat16', 'fp8', { tensors: (t) => t.set(`${Q}.weight`, tensor('bfloat16', t.get(`${Q}.weight`)!.dims)) }, 'quantized-tensor-invalid', `${Q}.weight is bfloat16; expected float8e4m3fn`],
    ['fp8 weight_scale per channel where the config says per tensor', 'fp8', { tensors: (t) => t.set(`${Q}.weight_scale`, tensor('float32', [32, 1])) }, 'quantized-tensor-invalid', `${Q}.weight_scale has shape [32, 1]`],
    ['FP8_BLOCK scale of the wrong block grid', 'fp8block', { tensors: (t) => t.set(`${Q}.weight_scale`, tensor('float32', [2, 2])) }, 'quantized-tensor-invalid', `${Q}.weight_scale has shape [2, 2]`],
    ['NVFP4 group scales stored as float32, not fp8', 'nvfp4', { tensors: (t) => t.set(`${Q}.weight_scale`, tensor('float32', t.get(`${Q}.weight_scale`)!.dims)) }, 'quantized-tensor-invalid', `${Q}.weight_scale is float32; expected float8e4m3fn`],
    ['NVFP4 without its weight_global_scale', 'nvfp4', { tensors: (t) => t.delete(`${Q}.weight_global_scale`) }, 'quantized-tensor-invalid', `${Q}.weight_global_scale is missing`],
    ['NVFP4 input_global_scale of zero', 'nvfp4', { tensors: (t) => t.set(`${Q}.input_global_scale`, tensor('float32', [1])) }, 'quantized-tensor-invalid', `${Q}.input_global_scale is 0; expected a finite positive scale`],
    ['FP8 input_scale of shape [2]', 'fp8', { tensors: (t) => t.set(`${Q}.input_scale`, tensor('float32', [2], Float32Array.of(1, 1))) }, 'quantized-tensor-invalid', `${Q}.input_scale has shape [2]`],
    ['MXFP4 packed codes with half the rows', 'mxfp4', { tensors: (t) => t.set(`${Q}.weight_packed`, tensor('uint8', [16, 16])) }, 'quantized-tensor-invalid', `${Q}.weight_packed has shape [16, 16]`],
    ['FP8_BLOCK weights without block_structure', 'fp8block', { config: (q) => delete q['config_groups']['group_0']['weights']['block_structure'] }, 'quantization-config-invalid', 'config_groups.group_0.weights'],
    ['NVFP4 with an odd group_size on fp4 group (not MX)', 'nvfp4', { config: (q) => Object.assign(q['config_groups']['group_0']['weights'], { strategy: 'group' }) }, 'quantization-config-invalid', 'config_groups.group_0.weights'],
    ['MXFP4 scale_dtype that is not e8m0 bytes', 'mxfp4', { config: (q) => (q['config_groups']['group_0']['weights']['scale_dtype'] = 'torch.float16') }, 'quantization-config-invalid', 'config_groups.group_0.weights.scale_dtype'],
    ['float input activations per channel (no inference path)', 'fp8', { config: (q) => Object.assign(q['config_groups']['group_0']['input_activations'], { strategy: 'channel' }) }, 'quantization-config-invalid', 'config_groups.group_0.input_activations'],
    ['type "fp8" (a name compressed-tensors does not have)', 'fp8', { config: (q) => (q['config_groups']['group_0']['weights']['type'] = 'fp8') }, 'quantization-config-invalid', 'config_groups.group_0.weights.type'],
  ];
  for (const [name, kind, tamper, reason, message] of cases) {
    test(name, async () => {
      const { error } = await readBack(kind, tamper);
      expect(error?.reason, String(error)).toBe(reason);
      expect(error.message).toContain(message);
      // a missing tensor names the checkpoint directory (or its index), a bad one the file holding it
      expect(error.message).toContain(reason === 'quantization-config-invalid' ? 'config.json' : message.includes('is missing') ? root : 'model.safetensors');
    });
  }
});
