import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { SafetensorsFile, SafetensorsWriter, writeSafetensors } from '../../src/formats/safetensors.js';
import { bytesOf, f32, tensor, type DType, type Tensor } from '../../src/tensor.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'qf-safetensors-write-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

let counter = 0;
async function freshDir(): Promise<string> {
  return mkdtemp(join(root, `d${counter++}-`));
}

/** a tensor whose bytes are a fixed, varied pattern (NaN payloads, -0, extremes included) */
function patterned(dtype: DType, dims: number[]): Tensor {
  const t = tensor(dtype, dims);
  const bytes = bytesOf(t);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 167 + 13) & 0xff;
  if (dtype === 'bool') for (let i = 0; i < bytes.length; i++) bytes[i] = i % 3 === 0 ? 1 : 0;
  return t;
}

const DTYPES: [DType, string][] = [
  ['float64', 'F64'],
  ['float32', 'F32'],
  ['float16', 'F16'],
  ['bfloat16', 'BF16'],
  ['int64', 'I64'],
  ['int32', 'I32'],
  ['int16', 'I16'],
  ['int8', 'I8'],
  ['uint8', 'U8'],
  ['bool', 'BOOL'],
];

function headerOf(bytes: Buffer): { n: number; json: Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>; text: string } {
  const n = Number(bytes.readBigUInt64LE(0));
  const text = bytes.subarray(8, 8 + n).toString('utf8');
  return { n, json: JSON.parse(text) as never, text };
}

describe('writeSafetensors', () => {
  test('writes the worked example of safetensors.ts byte for byte', async () => {
    const path = join(await freshDir(), 'w.safetensors');
    await writeSafetensors(path, { w: f32([2], [1, -2]) });
    const json = '{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
    const expected = Buffer.concat([
      Buffer.from([0x58, 0, 0, 0, 0, 0, 0, 0]),
      Buffer.from(json + '   ', 'utf8'),
      Buffer.from([0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0]),
    ]);
    expect(expected.length).toBe(104);
    expect((await readFile(path)).equals(expected)).toBe(true);
  });

  test.each(DTYPES)('round-trips %s bit for bit as %s, including 0-d and zero-size tensors', async (dtype, code) => {
    const path = join(await freshDir(), 'model.safetensors');
    const tensors: [string, Tensor][] = [
      ['matrix', patterned(dtype, [3, 5])],
      ['scalar', patterned(dtype, [])],
      ['empty', patterned(dtype, [0])],
      ['empty3d', patterned(dtype, [2, 0, 4])],
      ['odd', patterned(dtype, [7])],
    ];
    await writeSafetensors(path, tensors);
    const { json } = headerOf(await readFile(path));
    expect(json['matrix']!.dtype).toBe(code);
    const file = await SafetensorsFile.open(path);
    expect(file.names()).toEqual(tensors.map(([n]) => n));
    for (const [name, t] of tensors) {
      const back = await file.read(name);
      expect(back.dtype).toBe(dtype);
      expect(back.dims).toEqual(t.dims);
      expect(Buffer.from(bytesOf(back)).equals(Buffer.from(bytesOf(t)))).toBe(true);
    }
    await file.close();
  });

  test('pads the header with spaces so the data starts 8-byte aligned, whatever the name length', async () => {
    const dir = await freshDir();
    for (let len = 1; len <= 16; len++) {
      const path = join(dir, `a${len}.safetensors`);
      await writeSafetensors(path, [['x'.repeat(len), f32([1], [len])]], {});
      const bytes = await readFile(path);
      const { n, text } = headerOf(bytes);
      expect((8 + n) % 8).toBe(0);
      expect(text.trimEnd().length).toBeGreaterThan(n - 8);
      expect(/^ *$/.test(text.slice(text.trimEnd().length))).toBe(true);
      expect(bytes.readFloatLE(8 + n)).toBe(len);
    }
  });

  test('keeps the order tensors were given, even for integer-like names', async () => {
    const path = join(await freshDir(), 'model.safetensors');
    const names = ['z', '10', 'a', '2', '__proto__'];
    await writeSafetensors(path, names.map((n, i) => [n, f32([1], [i])] as const));
    const { text } = headerOf(await readFile(path));
    const positions = names.map((n) => text.indexOf(`${JSON.stringify(n)}:`));
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
    const file = await SafetensorsFile.open(path);
    expect(file.names()).toEqual(names);
    await file.close();
  });

  test('adds format "pt" to the metadata unless it is given', async () => {
    const dir = await freshDir();
    await writeSafetensors(join(dir, 'a.safetensors'), { w: f32([1], [1]) }, { step: 'gptq' });
    await writeSafetensors(join(dir, 'b.safetensors'), { w: f32([1], [1]) }, { format: 'mlx' });
    const [a, b] = await Promise.all([SafetensorsFile.open(join(dir, 'a.safetensors')), SafetensorsFile.open(join(dir, 'b.safetensors'))]);
    expect(a.metadata).toEqual({ format: 'pt', step: 'gptq' });
    expect(b.metadata).toEqual({ format: 'mlx' });
    await Promise.all([a.close(), b.close()]);
  });

  test('refuses duplicate names, the reserved name and data that does not fit the shape, writing nothing', async () => {
    const dir = await freshDir();
    const path = join(dir, 'bad.safetensors');
    await expect(writeSafetensors(path, [['a', f32([1])], ['a', f32([1])]])).rejects.toMatchObject({ reason: 'duplicate-name', tensor: 'a' });
    await expect(writeSafetensors(path, { __metadata__: f32([1]) })).rejects.toMatchObject({ reason: 'reserved-name' });
    const wrong = { dtype: 'float16', dims: [4], data: new Float32Array(4) } as unknown as Tensor;
    await expect(writeSafetensors(path, { w: wrong })).rejects.toMatchObject({ reason: 'bad-tensor', tensor: 'w' });
    await expect(writeSafetensors(path, { w: f32([1]) }, { step: 3 as unknown as string })).rejects.toMatchObject({ reason: 'metadata-not-string' });
    expect(await readdir(dir)).toEqual([]);
  });
});

describe('SafetensorsWriter', () => {
  const t40 = (i: number) => f32([10], Array.from({ length: 10 }, (_, k) => i * 10 + k));

  test('splits tensors into HF-named shards of at most maxShardBytes and writes the index', async () => {
    const dir = await freshDir();
    // two 40-byte tensors fill a shard exactly
    const writer = new SafetensorsWriter(dir, { maxShardBytes: 80 });
    for (let i = 0; i < 5; i++) await writer.add(`t${i}`, t40(i));
    const out = await writer.finish();
    const names = ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors'];
    expect(out.files).toEqual(names.map((n) => join(dir, n)));
    expect(out.totalSize).toBe(200);
    expect((await readdir(dir)).sort()).toEqual([...names, 'model.safetensors.index.json']);
    const index = JSON.parse(await readFile(join(dir, 'model.safetensors.index.json'), 'utf8')) as unknown;
    expect(index).toEqual({
      metadata: { total_size: 200 },
      weight_map: { t0: names[0], t1: names[0], t2: names[1], t3: names[1], t4: names[2] },
    });
    for (const [i, name] of ['t0', 't1', 't2', 't3', 't4'].entries()) {
      const file = await SafetensorsFile.open(join(dir, names[Math.floor(i / 2)]!));
      expect(Array.from((await file.read(name)).data as Float32Array)).toEqual(Array.from(t40(i).data));
      expect(file.metadata).toEqual({ format: 'pt' });
      await file.close();
    }
  });

  test('gives a tensor larger than maxShardBytes a shard of its own', async () => {
    const dir = await freshDir();
    const writer = new SafetensorsWriter(dir, { maxShardBytes: 100 });
    await writer.add('small0', t40(0));
    await writer.add('big', f32([50]));
    await writer.add('small1', t40(1));
    const out = await writer.finish();
    const shards = await Promise.all(out.files.map((f) => SafetensorsFile.open(f)));
    expect(shards.map((s) => s.names())).toEqual([['small0'], ['big'], ['small1']]);
    await Promise.all(shards.map((s) => s.close()));
  });

  test('names a single shard model.safetensors and writes no index', async () => {
    const dir = await freshDir();
    const writer = new SafetensorsWriter(dir, { maxShardBytes: 1000, metadata: { producer: 'quantforge' } });
    await writer.add('b', t40(1));
    await writer.add('a', tensor('bfloat16', [2], Uint16Array.of(0x3f80, 0xc000)));
    const out = await writer.finish();
    expect(out).toEqual({ files: [join(dir, 'model.safetensors')], index: undefined, totalSize: 44 });
    expect(await readdir(dir)).toEqual(['model.safetensors']);
    const file = await SafetensorsFile.open(out.files[0]!);
    expect(file.names()).toEqual(['b', 'a']);
    expect(file.metadata).toEqual({ format: 'pt', producer: 'quantforge' });
    expect(file.info('a').dtype).toBe('bfloat16');
    expect(Array.from((await file.readAs('a', 'float32')).data)).toEqual([1, -2]);
    await file.close();
  });

  test('streams each tensor to a hidden temp file at once, and no final file exists before finish', async () => {
    const dir = await freshDir();
    const writer = new SafetensorsWriter(dir, { maxShardBytes: 100 });
    await writer.add('t0', t40(0));
    await writer.add('t1', t40(1));
    let files = await readdir(dir);
    expect(files.every((f) => f.startsWith('.') && f.endsWith('.tmp'))).toBe(true);
    expect(files).toHaveLength(1);
    expect((await stat(join(dir, files[0]!))).size).toBe(80);
    await writer.finish();
    files = await readdir(dir);
    expect(files.filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  test('an empty writer produces a valid file with no tensors', async () => {
    const dir = await freshDir();
    await new SafetensorsWriter(dir).finish();
    const file = await SafetensorsFile.open(join(dir, 'model.safetensors'));
    expect(file.names()).toEqual([]);
    await file.close();
  });

  test('abort removes the temp files and writes nothing', async () => {
    const dir = await freshDir();
    const writer = new SafetensorsWriter(dir, { maxShardBytes: 50 });
    await writer.add('t0', t40(0));
    await writer.add('t1', t40(1));
    await writer.abort();
    expect(await readdir(dir)).toEqual([]);
    await expect(writer.add('t2', t40(2))).rejects.toMatchObject({ reason: 'writer-finished' });
  });

  test('refuses a repeated name, the reserved name, bad data, and use after finish', async () => {
    const dir = await freshDir();
    const writer = new SafetensorsWriter(dir);
    await writer.add('a', t40(0));
    await expect(writer.add('a', t40(1))).rejects.toMatchObject({ reason: 'duplicate-name', tensor: 'a' });
    await expect(writer.add('__metadata__', t40(1))).rejects.toMatchObject({ reason: 'reserved-name' });
    await expect(writer.add('c', { dtype: 'int32', dims: [3], data: new Int32Array(2) })).rejects.toMatchObject({ reason: 'bad-tensor', tensor: 'c' });
    await writer.finish();
    await expect(writer.add('d', t40(1))).rejects.toMatchObject({ reason: 'writer-finished', tensor: 'd' });
    await expect(writer.finish()).rejects.toMatchObject({ reason: 'writer-finished' });
  });
});
