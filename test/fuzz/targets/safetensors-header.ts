// Fuzz target: safetensors files. A valid file (a few tiny tensors, optional metadata) is built, then 0–3
// mutations are applied to its header object, its JSON text or its bytes: fields retyped or removed, offsets
// shifted, swapped, past the end, overlapping or leaving gaps, duplicate names, metadata of every JSON type,
// deeply nested or huge JSON, random length prefixes, truncation, appended bytes, flipped and non-UTF-8 bytes.
// Both readers (SafetensorsFile.open + reading every tensor, and readHeaderSync) must agree: 'ok' with every
// tensor readable, or the same named SafetensorsError naming the file (and the tensor, when it has one).

import fc from 'fast-check';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readHeaderSync, SafetensorsError, SafetensorsFile } from '../../../src/formats/safetensors.js';
import { namedReason, UnacceptableOutcome, type FuzzTarget } from '../harness.js';

const CODES = ['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL'] as const;
const SIZE: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
const FIELDS = ['dtype', 'shape', 'data_offsets'] as const;

export interface TensorSpec {
  name: string;
  code: string;
  shape: number[];
}

export type Mutation =
  | { kind: 'set-field'; tensor: number; field: (typeof FIELDS)[number]; value: unknown }
  | { kind: 'delete-field'; tensor: number; field: (typeof FIELDS)[number] }
  | { kind: 'add-field'; tensor: number; key: string; value: unknown }
  | { kind: 'entry-value'; tensor: number; value: unknown }
  | { kind: 'shift-offsets'; tensor: number; begin: number; end: number }
  | { kind: 'move'; tensor: number; by: number }
  | { kind: 'swap-offsets'; a: number; b: number }
  | { kind: 'past-end'; tensor: number; extra: number }
  | { kind: 'metadata'; value: unknown }
  | { kind: 'deep'; tensor: number; field: (typeof FIELDS)[number] | 'entry' | 'metadata'; depth: number; object: boolean }
  | { kind: 'duplicate-entry'; tensor: number }
  | { kind: 'replace-text'; text: string }
  | { kind: 'huge'; bytes: number; shape: 'spaces' | 'array' | 'entries' }
  | { kind: 'length-prefix'; value: bigint }
  | { kind: 'length-delta'; delta: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'append'; bytes: number }
  | { kind: 'flip'; at: number; byte: number }
  | { kind: 'non-utf8'; at: number; bytes: number[] };

export interface HeaderCase {
  tensors: TensorSpec[];
  metadata: Record<string, string> | null;
  mutations: Mutation[];
}

const name = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('model.embed_tokens.weight', 'model.layers.0.mlp.up_proj.weight', 'w', 'a', 'b', '0', '10') },
  { weight: 2, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 8 }) },
  { weight: 1, arbitrary: fc.constantFrom('__metadata__', '__proto__', 'constructor', '') },
);

const tensorSpec: fc.Arbitrary<TensorSpec> = fc.record({
  name,
  code: fc.constantFrom(...CODES),
  shape: fc.array(fc.nat({ max: 4 }), { maxLength: 3 }),
});

const weirdValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(-1, 1.5, 2 ** 53, 2 ** 64, -0, 1e308, 'F8_E4M3', 'U32', 'f32', 'F32 ', [], [0], [0, 0, 0], [-1, 8], [8, 0], [0, 2 ** 60], [[2]], ['1'], { '0': 1 }),
);

const index = fc.nat({ max: 7 });
const fraction = fc.double({ min: 0, max: 1, noNaN: true });

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('set-field' as const), tensor: index, field: fc.constantFrom(...FIELDS), value: weirdValue }),
  fc.record({ kind: fc.constant('delete-field' as const), tensor: index, field: fc.constantFrom(...FIELDS) }),
  fc.record({ kind: fc.constant('add-field' as const), tensor: index, key: fc.string({ maxLength: 8 }), value: weirdValue }),
  fc.record({ kind: fc.constant('entry-value' as const), tensor: index, value: weirdValue }),
  fc.record({ kind: fc.constant('shift-offsets' as const), tensor: index, begin: fc.integer({ min: -16, max: 16 }), end: fc.integer({ min: -16, max: 16 }) }),
  fc.record({ kind: fc.constant('move' as const), tensor: index, by: fc.integer({ min: -24, max: 24 }) }),
  fc.record({ kind: fc.constant('swap-offsets' as const), a: index, b: index }),
  fc.record({ kind: fc.constant('past-end' as const), tensor: index, extra: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.constant(2 ** 40)) }),
  fc.record({ kind: fc.constant('metadata' as const), value: fc.oneof(weirdValue, fc.dictionary(fc.string({ maxLength: 6 }), weirdValue, { maxKeys: 3 })) }),
  fc.record({
    kind: fc.constant('deep' as const),
    tensor: index,
    field: fc.constantFrom('dtype' as const, 'shape' as const, 'data_offsets' as const, 'entry' as const, 'metadata' as const),
    depth: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 64 }) }, { weight: 1, arbitrary: fc.integer({ min: 1000, max: 10_000 }) }),
    object: fc.boolean(),
  }),
  fc.record({ kind: fc.constant('duplicate-entry' as const), tensor: index }),
  fc.record({ kind: fc.constant('replace-text' as const), text: fc.oneof(fc.json({ maxDepth: 3 }), fc.string({ maxLength: 40 }), fc.constantFrom('', '{', '{}', 'null', '[]', '"x"', '{"a":}', '{"a":1}', '\ufeff{}')) }),
  // bigger ones (a 100 000-deep array, a header near the 100 MB cap) are plain tests in safetensors-header.test.ts
  fc.record({ kind: fc.constant('huge' as const), bytes: fc.integer({ min: 1 << 10, max: 1 << 17 }), shape: fc.constantFrom('spaces' as const, 'array' as const, 'entries' as const) }),
  fc.record({ kind: fc.constant('length-prefix' as const), value: fc.oneof(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.constantFrom(0n, 1n, 2n, 100_000_000n, 100_000_001n, (1n << 63n), (1n << 64n) - 1n)) }),
  fc.record({ kind: fc.constant('length-delta' as const), delta: fc.integer({ min: -9, max: 9 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fraction }),
  fc.record({ kind: fc.constant('append' as const), bytes: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ kind: fc.constant('flip' as const), at: fraction, byte: fc.nat({ max: 255 }) }),
  fc.record({ kind: fc.constant('non-utf8' as const), at: fraction, bytes: fc.constantFrom([0xff], [0xc3, 0x28], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0x80], [0xc0, 0xaf]).map((b) => [...b]) }),
);

export const headerCase: fc.Arbitrary<HeaderCase> = fc.record({
  tensors: fc.uniqueArray(tensorSpec, { maxLength: 5, selector: (t) => t.name }),
  metadata: fc.option(fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 3 }), { nil: null }),
  mutations: fc.array(mutation, { maxLength: 3 }),
});

type Entry = { name: string; value: unknown };

function nested(depth: number, object: boolean): string {
  return object ? `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}` : `${'['.repeat(depth)}1${']'.repeat(depth)}`;
}

/** the file's bytes: header JSON built by hand (order kept, duplicates possible), then the data section */
export function buildFile(c: HeaderCase): Uint8Array {
  let offset = 0;
  const entries: Entry[] = c.tensors
    .filter((t) => t.name !== '__metadata__')
    .map((t) => {
      const bytes = t.shape.reduce((a, b) => a * b, 1) * (SIZE[t.code] ?? 1);
      const value = { dtype: t.code, shape: t.shape, data_offsets: [offset, offset + bytes] };
      offset += bytes;
      return { name: t.name, value };
    });
  let dataSize = offset;
  let metadata: string | undefined = c.metadata === null ? undefined : JSON.stringify(c.metadata);
  const raw = new Map<Entry, string>();
  let text: string | undefined;
  let hugePad = '';
  const pick = (i: number): Entry | undefined => entries[entries.length === 0 ? 0 : i % entries.length];
  const obj = (e: Entry): Record<string, unknown> | undefined => (typeof e.value === 'object' && e.value !== null && !Array.isArray(e.value) ? (e.value as Record<string, unknown>) : undefined);
  const offsets = (e: Entry): number[] | undefined => {
    const o = obj(e)?.['data_offsets'];
    return Array.isArray(o) && o.length === 2 && o.every((x) => typeof x === 'number') ? (o as number[]) : undefined;
  };
  const byteMutations: Mutation[] = [];
  for (const m of c.mutations) {
    const e = 'tensor' in m ? pick(m.tensor) : undefined;
    switch (m.kind) {
      case 'set-field':
        if (e && obj(e)) obj(e)![m.field] = m.value;
        break;
      case 'delete-field':
        if (e && obj(e)) delete obj(e)![m.field];
        break;
      case 'add-field':
        if (e && obj(e)) obj(e)![m.key] = m.value;
        break;
      case 'entry-value':
        if (e) e.value = m.value;
        break;
      case 'shift-offsets': {
        const o = e && offsets(e);
        if (o) obj(e!)!['data_offsets'] = [o[0]! + m.begin, o[1]! + m.end];
        break;
      }
      case 'move': {
        // the same span elsewhere: overlapping a neighbour, or leaving a gap
        const o = e && offsets(e);
        if (o) obj(e!)!['data_offsets'] = [o[0]! + m.by, o[1]! + m.by];
        break;
      }
      case 'swap-offsets': {
        const [a, b] = [pick(m.a), pick(m.b)];
        const [oa, ob] = [a && offsets(a), b && offsets(b)];
        if (oa && ob) [obj(a!)!['data_offsets'], obj(b!)!['data_offsets']] = [ob, oa];
        break;
      }
      case 'past-end': {
        const o = e && offsets(e);
        if (o) obj(e!)!['data_offsets'] = [o[0]!, o[1]! + m.extra];
        break;
      }
      case 'metadata':
        metadata = JSON.stringify(m.value) ?? 'null';
        break;
      case 'deep': {
        const deep = nested(m.depth, m.object);
        if (m.field === 'metadata') metadata = deep;
        else if (e && m.field === 'entry') raw.set(e, deep);
        else if (e && obj(e)) raw.set(e, JSON.stringify(obj(e)).replace(new RegExp(`"${m.field}":(\\[[^\\]]*\\]|"[^"]*"|[^,}]*)`), `"${m.field}":${deep}`));
        break;
      }
      case 'duplicate-entry':
        if (e) entries.push({ name: e.name, value: e.value });
        break;
      case 'replace-text':
        text = m.text;
        break;
      case 'huge':
        if (m.shape === 'spaces') hugePad = ' '.repeat(m.bytes);
        else if (m.shape === 'array') metadata = `{"x":[${'0,'.repeat(m.bytes >> 1)}0]}`;
        else {
          // many valid zero-sized entries: a big but well-formed header
          for (let i = 0; i < m.bytes >> 6; i++) entries.push({ name: `t${i}`, value: { dtype: 'F32', shape: [0], data_offsets: [dataSize, dataSize] } });
        }
        break;
      default:
        byteMutations.push(m);
    }
  }
  if (text === undefined) {
    const parts = metadata === undefined ? [] : [`"__metadata__":${metadata}`];
    for (const e of entries) parts.push(`${JSON.stringify(e.name)}:${raw.get(e) ?? JSON.stringify(e.value) ?? 'null'}`);
    text = `{${parts.join(',')}}${hugePad}`;
  }
  const json = new TextEncoder().encode(text);
  const padded = Math.ceil(json.length / 8) * 8;
  let bytes = new Uint8Array(8 + padded + dataSize).fill(0x20, 8 + json.length, 8 + padded);
  let length = BigInt(padded);
  bytes.set(json, 8);
  for (let i = 8 + padded; i < bytes.length; i++) bytes[i] = (i * 31) & 0xff;
  // (data bytes are arbitrary: readers never interpret them)
  for (const m of byteMutations) {
    const at = 'at' in m ? Math.min(bytes.length - 1, Math.floor(m.at * bytes.length)) : 0;
    if (m.kind === 'length-prefix') length = m.value;
    else if (m.kind === 'length-delta') length = BigInt(Math.max(0, Number(length) + m.delta));
    else if (m.kind === 'truncate') bytes = bytes.slice(0, at);
    else if (m.kind === 'append') {
      const longer = new Uint8Array(bytes.length + m.bytes).fill(7);
      longer.set(bytes);
      bytes = longer;
    }
    else if (m.kind === 'flip' && bytes.length > 0) bytes[at] = m.byte;
    else if (m.kind === 'non-utf8' && bytes.length > 8) {
      const pos = 8 + Math.floor(m.at * Math.max(0, Number(length) - m.bytes.length));
      if (pos + m.bytes.length <= bytes.length) bytes.set(m.bytes, pos);
    }
    dataSize = -1;
  }
  if (bytes.length >= 8) new DataView(bytes.buffer, bytes.byteOffset).setBigUint64(0, length, true);
  return bytes;
}

/** 'ok' or the reason; both readers must agree */
async function readBoth(path: string): Promise<string> {
  const viaOpen = await openAndReadAll(path).then(
    () => 'ok',
    (e: unknown) => checked(e, path),
  );
  let viaSync: string;
  try {
    readHeaderSync(path);
    viaSync = 'ok';
  } catch (e) {
    viaSync = checked(e, path);
  }
  // the async reader also reads every tensor, so it may fail where the header alone was fine
  if (viaSync !== viaOpen && !(viaSync === 'ok' && viaOpen === 'short-read')) {
    throw new UnacceptableOutcome(`SafetensorsFile.open says ${viaOpen} but readHeaderSync says ${viaSync}`);
  }
  return viaOpen;
}

function checked(e: unknown, path: string): string {
  const reason = namedReason(e, path);
  if (!(e instanceof SafetensorsError)) throw new UnacceptableOutcome(`not a SafetensorsError: ${String(e).slice(0, 300)}`);
  if (e.tensor !== undefined && !e.message.includes(JSON.stringify(e.tensor))) throw new UnacceptableOutcome(`message does not name tensor ${e.tensor}`);
  return reason;
}

async function openAndReadAll(path: string): Promise<void> {
  const f = await SafetensorsFile.open(path);
  try {
    for (const [n, info] of f.tensors) {
      const t = await f.read(n);
      const [b, e] = info.byteRange;
      if (t.data.byteLength !== e - b) throw new UnacceptableOutcome(`${n}: read ${t.data.byteLength} bytes of a ${e - b}-byte span`);
    }
  } finally {
    await f.close();
  }
}

export const safetensorsHeaderTarget: FuzzTarget<HeaderCase, { path: string }> = {
  name: 'safetensors-header',
  description: 'safetensors files with mutated length prefix, JSON, dtypes, shapes, offsets, metadata and bytes → SafetensorsFile.open + read, readHeaderSync',
  arbitrary: headerCase,
  async setup(root) {
    return { path: join(root, 'model.safetensors') };
  },
  async run(c, { path }) {
    await writeFile(path, buildFile(c));
    const outcome = await readBoth(path);
    if (c.mutations.length === 0 && outcome !== 'ok' && !c.tensors.some((t) => t.name === '__metadata__')) {
      throw new UnacceptableOutcome(`a valid file was refused: ${outcome}`);
    }
    return outcome;
  },
};
