import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { GgufFile, GgufReadError, parseGgufHeader } from '../../src/formats/gguf/read.js';
import { ByteSink, array, bool, f32, str, u32, type GgufValue } from '../../src/formats/gguf/values.js';
import { GgufWriter } from '../../src/formats/gguf/writer.js';
import { GGML_TYPES } from '../../src/quant/gguf-types.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qf-gguf-writer-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('GGUF values', () => {
  test('a uint32 pair encodes as key length, key, type 4, value (worked example of values.ts)', () => {
    const s = new ByteSink();
    s.string('general.alignment');
    s.value(u32(32));
    expect(hex(s.result())).toBe(`1100000000000000${hex(Buffer.from('general.alignment'))}0400000020000000`);
  });

  test('an array of strings is item type 8, a uint64 count, then each string', () => {
    const s = new ByteSink();
    s.value(array('string', ['a', 'bc']));
    expect(hex(s.result())).toBe('09000000' + '08000000' + '0200000000000000' + '0100000000000000' + '61' + '0200000000000000' + '6263');
  });
});

describe('GgufWriter', () => {
  test('writes the worked example of writer.ts byte for byte', async () => {
    const w = new GgufWriter();
    w.addTensor('w', [2], GGML_TYPES.F32);
    const path = join(dir, 'example.gguf');
    expect(await w.write(path, () => new Uint8Array(Float32Array.of(1, -2).buffer))).toBe(128);
    const bytes = new Uint8Array(await readFile(path));
    expect(bytes.length).toBe(128);
    expect(hex(bytes.subarray(0, 24))).toBe('47475546' + '03000000' + '0100000000000000' + '0100000000000000');
    expect(hex(bytes.subarray(24, 57))).toBe(`1100000000000000${hex(Buffer.from('general.alignment'))}0400000020000000`);
    expect(hex(bytes.subarray(57, 90))).toBe('0100000000000000' + '77' + '01000000' + '0200000000000000' + '00000000' + '0000000000000000');
    expect(bytes.subarray(90, 96).every((b) => b === 0)).toBe(true);
    expect(hex(bytes.subarray(96, 104))).toBe('0000803f000000c0');
    expect(bytes.subarray(104).every((b) => b === 0)).toBe(true);
  });

  test('every metadata type, tensor shape, type and offset reads back; offsets are aligned', async () => {
    const values: Record<string, GgufValue> = {
      'a.u32': u32(7),
      'a.f32': f32(0.5),
      'a.bool': bool(true),
      'a.str': str('ünïcode ✓'),
      'a.u64': { type: 'uint64', value: 2n ** 40n },
      'a.i8': { type: 'int8', value: -3 },
      'a.f64': { type: 'float64', value: Math.PI },
      'a.ints': array('int32', [1, -2, 3]),
      'a.floats': array('float32', [0.25, -1]),
      'a.strings': array('string', ['x', '', 'yz']),
    };
    const w = new GgufWriter(64);
    for (const [k, v] of Object.entries(values)) w.set(k, v);
    w.addTensor('m', [3, 32], GGML_TYPES.Q8_0);
    w.addTensor('v', [5], GGML_TYPES.F16);
    w.addTensor('k', [2, 256], GGML_TYPES.Q4_K);
    const path = join(dir, 'all.gguf');
    await w.write(path, (t) => new Uint8Array(t.byteLength).fill(t.name.charCodeAt(0)));
    const file = await GgufFile.open(path);
    try {
      expect(Object.fromEntries(file.header.metadata)).toEqual({ 'general.alignment': u32(64), ...values });
      expect(file.header.alignment).toBe(64);
      expect(file.header.tensors.map((t) => [t.name, t.shape, t.type.name, t.offset, t.byteLength])).toEqual([
        ['m', [3, 32], 'Q8_0', 0, 102],
        ['v', [5], 'F16', 128, 10],
        ['k', [2, 256], 'Q4_K', 192, 288],
      ]);
      expect(file.header.dataOffset % 64).toBe(0);
      expect((await file.bytes('k')).every((b) => b === 'k'.charCodeAt(0))).toBe(true);
    } finally {
      await file.close();
    }
  });

  test('refuses duplicate keys and tensors, rows that are not whole blocks, and data of the wrong length', async () => {
    const w = new GgufWriter();
    w.set('x', u32(1));
    expect(() => w.set('x', u32(2))).toThrow(/set twice/);
    expect(() => w.set('general.alignment', u32(64))).toThrow(/constructor/);
    w.addTensor('t', [2, 32], GGML_TYPES.Q4_0);
    expect(() => w.addTensor('t', [2, 32], GGML_TYPES.Q4_0)).toThrow(/declared twice/);
    expect(() => w.addTensor('u', [2, 172], GGML_TYPES.Q4_0)).toThrow(/172 values is not a whole number of Q4_0 blocks/);
    expect(() => new GgufWriter(24)).toThrow(/power of two/);
    await expect(w.write(join(dir, 'bad.gguf'), () => new Uint8Array(35))).rejects.toThrow(/needs 36 bytes, got 35/);
  });
});

describe('GGUF reader', () => {
  test('refuses a file that is not GGUF, and a header cut short', async () => {
    expect(() => parseGgufHeader(new Uint8Array(Buffer.from('PK\x03\x04 not gguf at all....')))).toThrow(GgufReadError);
    const w = new GgufWriter();
    w.set('k', str('value'));
    expect(() => parseGgufHeader(w.header().subarray(0, 30))).toThrow(RangeError);
  });
});
