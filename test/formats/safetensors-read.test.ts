import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { SafetensorsReason } from '../../src/diag/failure.js';
import { SafetensorsError, SafetensorsFile, writeSafetensors } from '../../src/formats/safetensors.js';
import { tensor } from '../../src/tensor.js';

const SHARED = fileURLToPath(new URL('../../../shared/models/stories260K/model.safetensors', import.meta.url));
const REQUIRE_SHARED = process.env['QUANTFORGE_REQUIRE_SHARED'] === '1';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qf-safetensors-read-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** a file from a header (JSON text or an object) and `data` zero bytes; `n` overrides the length prefix */
function fileBytes(header: string | object | Uint8Array, data: number, n?: bigint): Uint8Array {
  const json = header instanceof Uint8Array ? header : new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data);
  new DataView(out.buffer).setBigUint64(0, n ?? BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

let counter = 0;
async function place(bytes: Uint8Array): Promise<string> {
  const sub = join(dir, `case-${counter++}`);
  await mkdir(sub);
  const path = join(sub, 'model.safetensors');
  await writeFile(path, bytes);
  return path;
}

const f32 = (shape: number[], begin: number, end: number) => ({ dtype: 'F32', shape, data_offsets: [begin, end] });
const T = 'model.layers.0.mlp.up_proj.weight';

interface Case {
  reason: SafetensorsReason;
  bytes: Uint8Array;
  tensor?: string;
  field?: string;
  /** text the message must contain besides file, tensor and field */
  says?: string;
}

const CASES: Record<string, Case> = {
  'a file shorter than the length prefix': { reason: 'file-too-short', bytes: new Uint8Array(5), says: '5 bytes' },
  'a header length past the end of the file': { reason: 'header-length-out-of-range', bytes: fileBytes('{}', 0, 64n), field: 'header length', says: '64' },
  'a header length above the 100 MB cap': { reason: 'header-length-out-of-range', bytes: fileBytes('{}', 0, 0xffffffffffffffffn), field: 'header length', says: '18446744073709551615' },
  'a header that is not UTF-8': { reason: 'header-not-utf8', bytes: fileBytes(Uint8Array.of(0x7b, 0xff, 0xfe, 0x7d), 0), says: 'UTF-8' },
  'a header that is not JSON': { reason: 'header-not-json', bytes: fileBytes(`{"${T}": {"dtype": "F32",`, 0), says: 'not JSON' },
  'a header that is a JSON array': { reason: 'header-not-object', bytes: fileBytes('[1, 2]', 0), says: '[1,2]' },
  'a tensor name given twice': {
    reason: 'duplicate-name',
    bytes: fileBytes(`{"${T}": ${JSON.stringify(f32([2], 0, 8))}, "${T}": ${JSON.stringify(f32([2], 8, 16))}}`, 16),
    tensor: T,
  },
  'a field given twice in one entry': {
    reason: 'duplicate-field',
    bytes: fileBytes(`{"${T}": {"dtype": "F32", "dtype": "F16", "shape": [2], "data_offsets": [0, 8]}}`, 8),
    tensor: T,
    field: '"dtype"',
  },
  'an entry that is not an object': { reason: 'entry-not-object', bytes: fileBytes({ [T]: [0, 8] }, 8), tensor: T, says: '[0,8]' },
  'an entry without data_offsets': { reason: 'missing-field', bytes: fileBytes({ [T]: { dtype: 'F32', shape: [2] } }, 8), tensor: T, field: 'data_offsets' },
  'an entry with an extra field': { reason: 'unknown-field', bytes: fileBytes({ [T]: { ...f32([2], 0, 8), offsets: [0, 8] } }, 8), tensor: T, field: '"offsets"' },
  'a dtype that does not exist': { reason: 'unknown-dtype', bytes: fileBytes({ [T]: { ...f32([2], 0, 8), dtype: 'F33' } }, 8), tensor: T, field: 'dtype', says: 'BF16' },
  'a dtype that is a number': { reason: 'unknown-dtype', bytes: fileBytes({ [T]: { ...f32([2], 0, 8), dtype: 4 } }, 8), tensor: T, field: 'dtype', says: '4 (a number)' },
  'a float8 dtype quantforge cannot hold': { reason: 'unsupported-dtype', bytes: fileBytes({ [T]: { ...f32([2], 0, 2), dtype: 'F8_E5M2' } }, 2), tensor: T, field: 'dtype', says: 'F8_E5M2' },
  'a negative dimension': { reason: 'bad-shape', bytes: fileBytes({ [T]: f32([2, -1], 0, 8) }, 8), tensor: T, field: 'shape', says: '[2,-1]' },
  'a fractional dimension': { reason: 'bad-shape', bytes: fileBytes({ [T]: f32([1.5], 0, 8) }, 8), tensor: T, field: 'shape', says: '[1.5]' },
  'offsets that end before they begin': { reason: 'bad-offsets', bytes: fileBytes({ [T]: f32([0], 100, 90) }, 100), tensor: T, field: 'data_offsets', says: 'data_offsets [100, 90]' },
  'offsets that are not a pair': { reason: 'bad-offsets', bytes: fileBytes({ [T]: { dtype: 'F32', shape: [2], data_offsets: [0] } }, 8), tensor: T, field: 'data_offsets' },
  'a span that does not match shape times dtype size': {
    reason: 'byte-size-mismatch',
    bytes: fileBytes({ [T]: f32([2, 2], 0, 12) }, 12),
    tensor: T,
    field: 'data_offsets',
    says: 'F32 [2, 2] needs 16',
  },
  'offsets past the end of the data section': { reason: 'offsets-out-of-bounds', bytes: fileBytes({ [T]: f32([4], 0, 16) }, 8), tensor: T, field: 'data_offsets', says: '8 bytes' },
  'two tensors sharing bytes': {
    reason: 'offsets-overlap',
    bytes: fileBytes({ a: f32([2], 0, 8), [T]: f32([2], 4, 12) }, 12),
    tensor: T,
    field: 'data_offsets',
    says: '"a" ends at 8',
  },
  'a zero-size tensor inside another one': { reason: 'offsets-overlap', bytes: fileBytes({ a: f32([4], 0, 16), [T]: f32([0], 8, 8) }, 16), tensor: T, field: 'data_offsets' },
  'a hole between two tensors': { reason: 'offsets-gap', bytes: fileBytes({ a: f32([2], 0, 8), [T]: f32([2], 12, 20) }, 20), tensor: T, field: 'data_offsets', says: '[8, 12)' },
  'a first tensor that does not start at 0': { reason: 'offsets-gap', bytes: fileBytes({ [T]: f32([2], 4, 12) }, 12), tensor: T, field: 'data_offsets', says: '[0, 4)' },
  'bytes after the last tensor': { reason: 'offsets-gap', bytes: fileBytes({ [T]: f32([2], 0, 8) }, 12), tensor: T, field: 'data_offsets', says: 'bytes [8, 12)' },
  'data bytes but no tensors': { reason: 'offsets-gap', bytes: fileBytes({ __metadata__: { format: 'pt' } }, 4), says: 'bytes [0, 4)' },
  'metadata that is not an object': { reason: 'metadata-not-object', bytes: fileBytes({ __metadata__: 'pt' }, 0), field: '__metadata__' },
  'a metadata value that is not a string': { reason: 'metadata-not-string', bytes: fileBytes({ __metadata__: { format: 'pt', step: 3 } }, 0), field: '__metadata__.step', says: '3 (a number)' },
};

describe('SafetensorsFile.open on malformed files', () => {
  test.each(Object.entries(CASES))('refuses %s', async (_, c) => {
    const path = await place(c.bytes);
    const err = await SafetensorsFile.open(path).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SafetensorsError);
    const e = err as SafetensorsError;
    expect(e.reason).toBe(c.reason);
    expect(e.message).toContain(path);
    expect(e.file).toBe(path);
    if (c.tensor !== undefined) {
      expect(e.tensor).toBe(c.tensor);
      expect(e.message).toContain(`tensor "${c.tensor}"`);
    }
    if (c.field !== undefined) {
      expect(e.field).toBe(c.field);
      expect(e.message).toContain(c.field);
    }
    if (c.says !== undefined) expect(e.message).toContain(c.says);
  });

  test('the malformed cases cover at least 12 distinct reasons', () => {
    expect(new Set(Object.values(CASES).map((c) => c.reason)).size).toBeGreaterThanOrEqual(12);
  });
});

describe('SafetensorsFile.open on valid files', () => {
  test('accepts entries in any header order and lists them in data order', async () => {
    const header = { z: f32([1], 8, 12), __metadata__: { format: 'pt' }, a: f32([2], 0, 8), e: f32([0], 12, 12) };
    const file = await SafetensorsFile.open(await place(fileBytes(header, 12)));
    expect(file.names()).toEqual(['a', 'z', 'e']);
    expect(file.metadata).toEqual({ format: 'pt' });
    await file.close();
  });

  test('accepts a header with padding spaces, no metadata, and no tensors', async () => {
    const file = await SafetensorsFile.open(await place(fileBytes('{}      ', 0)));
    expect(file.names()).toEqual([]);
    expect(file.metadata).toEqual({});
    await file.close();
  });

  test('keeps names such as "__proto__" and "0" as ordinary tensors', async () => {
    const bytes = fileBytes(`{"__proto__": ${JSON.stringify(f32([1], 0, 4))}, "0": ${JSON.stringify(f32([1], 4, 8))}}`, 8);
    const file = await SafetensorsFile.open(await place(bytes));
    expect(file.names()).toEqual(['__proto__', '0']);
    expect(file.info('__proto__').shape).toEqual([1]);
    await file.close();
  });

  test('reports the absolute byte range of each tensor', async () => {
    const json = JSON.stringify({ a: f32([2], 0, 8), b: f32([1], 8, 12) });
    const file = await SafetensorsFile.open(await place(fileBytes(json, 12)));
    const start = 8 + json.length;
    expect(file.info('a').byteRange).toEqual([start, start + 8]);
    expect(file.info('b').byteRange).toEqual([start + 8, start + 12]);
    await file.close();
  });
});

describe('SafetensorsFile reads', () => {
  test('reads one tensor of a 3 GB file with positional reads, without reading the rest', async () => {
    const big = 3_000_000_000;
    const header = new TextEncoder().encode(JSON.stringify({ big: { dtype: 'U8', shape: [big], data_offsets: [0, big] }, tail: f32([2], big, big + 8) }));
    const path = join(dir, 'sparse.safetensors');
    const handle = await open(path, 'w');
    const prefix = new Uint8Array(8);
    new DataView(prefix.buffer).setBigUint64(0, BigInt(header.length), true);
    await handle.write(prefix, 0, 8, 0);
    await handle.write(header, 0, header.length, 8);
    await handle.write(new Uint8Array(Float32Array.of(1.5, -3).buffer), 0, 8, 8 + header.length + big);
    await handle.close();
    const file = await SafetensorsFile.open(path);
    const tail = await file.read('tail');
    expect(tail.dtype).toBe('float32');
    expect(Array.from(tail.data as Float32Array)).toEqual([1.5, -3]);
    await file.close();
    await rm(path);
  });

  test('names the tensor and lists some of the file when asked for a missing one', async () => {
    const file = await SafetensorsFile.open(await place(fileBytes({ a: f32([2], 0, 8) }, 8)));
    const err = await file.read('b').catch((e: unknown) => e);
    expect(err).toMatchObject({ reason: 'tensor-not-found', tensor: 'b' });
    expect((err as Error).message).toContain('"a"');
    await file.close();
  });

  test('refuses to read after close', async () => {
    const file = await SafetensorsFile.open(await place(fileBytes({ a: f32([2], 0, 8) }, 8)));
    await file.close();
    await expect(file.read('a')).rejects.toMatchObject({ reason: 'file-closed' });
  });

  test('reports a file truncated after it was opened', async () => {
    const path = await place(fileBytes({ a: f32([2], 0, 8) }, 8));
    const file = await SafetensorsFile.open(path);
    await writeFile(path, (await readFile(path)).subarray(0, 30));
    await expect(file.read('a')).rejects.toMatchObject({ reason: 'short-read', tensor: 'a' });
    await file.close();
  });
});

describe('SafetensorsFile.readRows', () => {
  test('reads rows [start, end) along the first dimension by offset, equal to the slice of the whole tensor', async () => {
    const path = join(dir, 'rows.safetensors');
    const data = Float32Array.from({ length: 5 * 3 * 2 }, (_, i) => i * 0.5 - 3);
    await writeSafetensors(path, [['ids', tensor('int32', [4], Int32Array.of(7, 8, 9, 10))], ['hidden', tensor('float32', [5, 3, 2], data)]]);
    const f = await SafetensorsFile.open(path);
    try {
      const rows = await f.readRows('hidden', 1, 4);
      expect(rows.dtype).toBe('float32');
      expect(rows.dims).toEqual([3, 3, 2]);
      expect(rows.data).toEqual(data.subarray(6, 24));
      expect((await f.readRows('hidden', 2, 2)).dims).toEqual([0, 3, 2]);
      expect((await f.readRows('ids', 3, 4)).data).toEqual(Int32Array.of(10));
      await expect(f.readRows('hidden', 4, 6)).rejects.toMatchObject({ reason: 'offsets-out-of-bounds', message: expect.stringContaining('rows [4, 6) are outside its 5 rows') });
      await expect(f.readRows('hidden', 3, 2)).rejects.toMatchObject({ reason: 'offsets-out-of-bounds' });
    } finally {
      await f.close();
    }
    await expect(f.readRows('hidden', 0, 1)).rejects.toMatchObject({ reason: 'file-closed' });
  });
});

describe('SafetensorsFile on a real checkpoint', () => {
  test.skipIf(!existsSync(SHARED) && !REQUIRE_SHARED)('reads stories260K: 47 float32 tensors, 260,032 parameters, bytes as stored', async () => {
    const file = await SafetensorsFile.open(SHARED);
    expect(file.metadata['format']).toBe('pt');
    expect(file.tensors.size).toBe(47);
    let params = 0;
    for (const info of file.tensors.values()) {
      expect(info.dtype).toBe('float32');
      params += info.shape.reduce((a, b) => a * b, 1);
    }
    expect(params).toBe(260_032);
    expect(file.info('model.embed_tokens.weight').shape).toEqual([512, 64]);
    expect(file.info('model.layers.0.mlp.down_proj.weight').shape).toEqual([64, 172]);
    // compare against the bytes located by hand: 8 + N + begin
    const raw = await readFile(SHARED);
    const n = Number(raw.readBigUInt64LE(0));
    const begin = (JSON.parse(raw.subarray(8, 8 + n).toString('utf8')) as Record<string, { data_offsets: number[] }>)['model.norm.weight']!.data_offsets[0]!;
    const norm = await file.readAs('model.norm.weight', 'float32');
    expect(norm.dims).toEqual([64]);
    expect(Array.from(norm.data)).toEqual(Array.from(new Float32Array(raw.buffer.slice(raw.byteOffset + 8 + n + begin, raw.byteOffset + 8 + n + begin + 256))));
    await file.close();
  });
});
