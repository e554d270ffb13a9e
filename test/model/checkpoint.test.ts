import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { SafetensorsError, SafetensorsWriter, writeSafetensors } from '../../src/formats/safetensors.js';
import { CheckpointError, openCheckpoint } from '../../src/model/checkpoint.js';
import { f32, tensor, type Tensor } from '../../src/tensor.js';

const SHARED_DIR = fileURLToPath(new URL('../../../shared/models/stories260K', import.meta.url));
const REQUIRE_SHARED = process.env['QUANTFORGE_REQUIRE_SHARED'] === '1';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'qf-checkpoint-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

let counter = 0;
const freshDir = () => mkdtemp(join(root, `d${counter++}-`));

const TENSORS: [string, Tensor][] = [
  ['model.embed_tokens.weight', f32([4, 6], Array.from({ length: 24 }, (_, i) => i / 8 - 1))],
  ['model.layers.0.input_layernorm.weight', f32([6], [1, 1.5, 2, 2.5, 3, 3.5])],
  ['model.layers.0.mlp.up_proj.weight', tensor('bfloat16', [2, 3], Uint16Array.of(0x3f80, 0xc000, 0x4049, 0x0000, 0x8000, 0x3e80))],
  ['model.layers.0.mlp.down_proj.weight', tensor('float16', [3, 2], Uint16Array.of(0x3c00, 0xc000, 0x3555, 0x7bff, 0x0001, 0x8000))],
  ['model.norm.weight', f32([6], [6, 5, 4, 3, 2, 1])],
];

/** the five tensors above over 3 shards of at most 50 data bytes: 96 | 24+12+12 | 24 */
async function shardedModel(): Promise<string> {
  const dir = await freshDir();
  const writer = new SafetensorsWriter(dir, { maxShardBytes: 50 });
  for (const [name, t] of TENSORS) await writer.add(name, t);
  const out = await writer.finish();
  expect(out.files).toHaveLength(3);
  return dir;
}

async function editIndex(dir: string, edit: (weightMap: Record<string, string>) => void): Promise<void> {
  const path = join(dir, 'model.safetensors.index.json');
  const index = JSON.parse(await readFile(path, 'utf8')) as { weight_map: Record<string, string> };
  edit(index.weight_map);
  await writeFile(path, JSON.stringify(index));
}

describe('openCheckpoint on a sharded directory', () => {
  test('reads every tensor across 3 shards bit for bit', async () => {
    const dir = await shardedModel();
    const ckpt = await openCheckpoint(dir);
    expect(ckpt.index).toBe(join(dir, 'model.safetensors.index.json'));
    expect(ckpt.names().sort()).toEqual(TENSORS.map(([n]) => n).sort());
    expect(ckpt.files()).toEqual([1, 2, 3].map((i) => join(dir, `model-0000${i}-of-00003.safetensors`)));
    for (const [name, t] of TENSORS) {
      expect(ckpt.has(name)).toBe(true);
      const back = await ckpt.read(name);
      expect(back.dtype).toBe(t.dtype);
      expect(back.dims).toEqual(t.dims);
      expect(Array.from(back.data as Uint16Array)).toEqual(Array.from(t.data as Uint16Array));
    }
    expect(ckpt.has('lm_head.weight')).toBe(false);
    const info = await ckpt.info('model.layers.0.mlp.down_proj.weight');
    expect(info).toMatchObject({ dtype: 'float16', shape: [3, 2], file: join(dir, 'model-00002-of-00003.safetensors') });
    await ckpt.close();
  });

  test('converts bfloat16 and float16 weights to float32 on request', async () => {
    const ckpt = await openCheckpoint(await shardedModel());
    const up = await ckpt.readAs('model.layers.0.mlp.up_proj.weight', 'float32');
    expect(up.dtype).toBe('float32');
    expect(Array.from(up.data)).toEqual([1, -2, 3.140625, 0, -0, 0.25]);
    const down = await ckpt.readAs('model.layers.0.mlp.down_proj.weight', 'float32');
    expect(Array.from(down.data)).toEqual([1, -2, 0.333251953125, 65504, 2 ** -24, -0]);
    await ckpt.close();
  });

  test('opens shards lazily: a corrupt third shard does not stop reads from the first', async () => {
    const dir = await shardedModel();
    const ckpt = await openCheckpoint(dir);
    await writeFile(join(dir, 'model-00003-of-00003.safetensors'), 'not a safetensors file');
    expect((await ckpt.read('model.embed_tokens.weight')).dims).toEqual([4, 6]);
    await expect(ckpt.read('model.norm.weight')).rejects.toBeInstanceOf(SafetensorsError);
    await ckpt.close();
  });

  test('refuses an index that points at a shard that does not exist', async () => {
    const dir = await shardedModel();
    await rm(join(dir, 'model-00002-of-00003.safetensors'));
    const err = (await openCheckpoint(dir).catch((e: unknown) => e)) as CheckpointError;
    expect(err).toBeInstanceOf(CheckpointError);
    expect(err.reason).toBe('missing-shard');
    expect(err.message).toContain('model.safetensors.index.json');
    expect(err.message).toContain('model-00002-of-00003.safetensors');
    expect(err.message).toContain('"model.layers.0.input_layernorm.weight"');
  });

  test('refuses an index entry whose shard lacks the tensor, when that shard is first read', async () => {
    const dir = await shardedModel();
    await editIndex(dir, (map) => {
      map['model.layers.0.self_attn.q_proj.weight'] = 'model-00001-of-00003.safetensors';
    });
    const ckpt = await openCheckpoint(dir);
    expect(ckpt.has('model.layers.0.self_attn.q_proj.weight')).toBe(true);
    const err = (await ckpt.read('model.embed_tokens.weight').catch((e: unknown) => e)) as CheckpointError;
    expect(err.reason).toBe('missing-tensor');
    expect(err.message).toContain('"model.layers.0.self_attn.q_proj.weight"');
    expect(err.message).toContain('model-00001-of-00003.safetensors');
    expect((await ckpt.read('model.norm.weight')).dims).toEqual([6]);
    await ckpt.close();
  });

  test('refuses an index entry that points outside the model directory', async () => {
    const dir = await shardedModel();
    await editIndex(dir, (map) => {
      map['model.norm.weight'] = '../elsewhere.safetensors';
    });
    await expect(openCheckpoint(dir)).rejects.toMatchObject({ reason: 'index-invalid', message: expect.stringContaining('"model.norm.weight"') });
  });

  test('refuses an index that is not JSON or has no weight_map', async () => {
    const dir = await shardedModel();
    await writeFile(join(dir, 'model.safetensors.index.json'), '{"metadata": {}}');
    await expect(openCheckpoint(dir)).rejects.toMatchObject({ reason: 'index-invalid', message: expect.stringContaining('weight_map') });
    await writeFile(join(dir, 'model.safetensors.index.json'), '{"weight_map": ');
    await expect(openCheckpoint(dir)).rejects.toMatchObject({ reason: 'index-invalid' });
  });

  test('names the checkpoint when asked for a tensor it does not have', async () => {
    const dir = await shardedModel();
    const ckpt = await openCheckpoint(dir);
    const err = (await ckpt.read('lm_head.weight').catch((e: unknown) => e)) as CheckpointError;
    expect(err.reason).toBe('tensor-not-found');
    expect(err.message).toContain(dir);
    expect(err.message).toContain('"lm_head.weight"');
    await ckpt.close();
  });
});

describe('openCheckpoint on unsharded directories', () => {
  test('reads a single model.safetensors', async () => {
    const dir = await freshDir();
    await writeSafetensors(join(dir, 'model.safetensors'), TENSORS);
    const ckpt = await openCheckpoint(dir);
    expect(ckpt.index).toBeUndefined();
    expect(ckpt.names()).toEqual(TENSORS.map(([n]) => n));
    expect(ckpt.files()).toEqual([join(dir, 'model.safetensors')]);
    expect(Array.from((await ckpt.readAs('model.norm.weight', 'float32')).data)).toEqual([6, 5, 4, 3, 2, 1]);
    await ckpt.close();
  });

  test('falls back to exactly the *.safetensors files present', async () => {
    const dir = await freshDir();
    await writeSafetensors(join(dir, 'b.safetensors'), TENSORS.slice(2));
    await writeSafetensors(join(dir, 'a.safetensors'), TENSORS.slice(0, 2));
    await writeFile(join(dir, 'notes.txt'), 'x');
    const ckpt = await openCheckpoint(dir);
    expect(ckpt.files()).toEqual([join(dir, 'a.safetensors'), join(dir, 'b.safetensors')]);
    expect(ckpt.names()).toEqual(TENSORS.map(([n]) => n));
    expect((await ckpt.info('model.norm.weight')).file).toBe(join(dir, 'b.safetensors'));
    await ckpt.close();
  });

  test('refuses a tensor that appears in two files', async () => {
    const dir = await freshDir();
    await writeSafetensors(join(dir, 'a.safetensors'), TENSORS.slice(0, 2));
    await writeSafetensors(join(dir, 'b.safetensors'), TENSORS.slice(1));
    await expect(openCheckpoint(dir)).rejects.toMatchObject({ reason: 'duplicate-tensor', message: expect.stringContaining('"model.layers.0.input_layernorm.weight"') });
  });

  test.each(['pytorch_model.bin', 'pytorch_model-00001-of-00002.bin', 'model.pt', 'weights.pth', 'last.ckpt'])(
    'refuses pickle weights (%s) and says how to convert them',
    async (name) => {
      const dir = await freshDir();
      await writeFile(join(dir, name), 'PK\x03\x04');
      await writeFile(join(dir, 'config.json'), '{}');
      const err = (await openCheckpoint(dir).catch((e: unknown) => e)) as CheckpointError;
      expect(err).toBeInstanceOf(CheckpointError);
      expect(err.reason).toBe('pickle-refused');
      expect(err.message).toContain(name);
      expect(err.message).toContain('never loads pickle files');
      expect(err.message).toContain('execute');
      expect(err.message).toContain('safe_serialization=True');
    },
  );

  test('refuses a directory with no weights at all, listing what it found', async () => {
    const dir = await freshDir();
    await writeFile(join(dir, 'config.json'), '{}');
    await expect(openCheckpoint(dir)).rejects.toMatchObject({ reason: 'no-weights', message: expect.stringContaining('config.json') });
  });

  test('refuses a directory that does not exist', async () => {
    await expect(openCheckpoint(join(root, 'nowhere'))).rejects.toMatchObject({ reason: 'no-weights', message: expect.stringContaining('ENOENT') });
  });

  test.skipIf(!existsSync(SHARED_DIR) && !REQUIRE_SHARED)('opens the real stories260K directory', async () => {
    const ckpt = await openCheckpoint(SHARED_DIR);
    expect(ckpt.files()).toEqual([join(SHARED_DIR, 'model.safetensors')]);
    expect(ckpt.has('model.layers.4.mlp.down_proj.weight')).toBe(true);
    expect((await ckpt.readAs('model.layers.4.mlp.down_proj.weight', 'float32')).dims).toEqual([64, 172]);
    await ckpt.close();
  });
});
