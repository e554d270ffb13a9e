// Random mutations of a JSON document, shared by the model-directory targets: keys deleted, renamed, added or
// retyped (numbers huge, negative, fractional, "NaN" strings, nulls, deep nesting), and the text itself
// truncated, duplicated, replaced or made invalid UTF-8.

import fc from 'fast-check';

export type JsonMutation =
  | { kind: 'delete'; path: number[] }
  | { kind: 'set'; path: number[]; value: unknown }
  | { kind: 'set-key'; key: string; value: unknown }
  | { kind: 'set-path'; keys: string[]; value: unknown }
  | { kind: 'rename'; path: number[]; name: string }
  | { kind: 'add'; path: number[]; key: string; value: unknown }
  | { kind: 'duplicate-key'; key: string; value: unknown }
  | { kind: 'truncate'; at: number }
  | { kind: 'replace-text'; text: string }
  | { kind: 'non-utf8'; at: number };

export const weirdValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(0, -1, 1, 2, 3, 1.5, -0.5, 1e308, 2 ** 53 + 2, 1e15, 4096, 'NaN', 'Infinity', '16', '', null, true, false, [], {}, [1, 2], { a: 1 }, 'x'.repeat(300)) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 64 }).map((d) => JSON.parse(`${'['.repeat(d)}1${']'.repeat(d)}`) as unknown) },
);

const path = fc.array(fc.nat({ max: 50 }), { minLength: 1, maxLength: 3 });

/** mutations of a document; `keys` are the interesting top-level keys `set-key` picks from */
export function jsonMutation(keys: readonly string[]): fc.Arbitrary<JsonMutation> {
  return fc.oneof(
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('delete' as const), path }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('set' as const), path, value: weirdValue }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('set-key' as const), key: fc.constantFrom(...keys), value: weirdValue }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('rename' as const), path, name: fc.oneof(fc.string({ maxLength: 10 }), fc.constantFrom(...keys)) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('add' as const), path, key: fc.oneof(fc.string({ maxLength: 10 }), fc.constantFrom(...keys)), value: weirdValue }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('duplicate-key' as const), key: fc.constantFrom(...keys), value: weirdValue }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('replace-text' as const), text: fc.oneof(fc.json({ maxDepth: 2 }), fc.string({ maxLength: 30 }), fc.constantFrom('', '{', 'null', '[]', '{"a":}')) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('non-utf8' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }) },
  );
}

type Container = Record<string, unknown> | unknown[];

function isContainer(v: unknown): v is Container {
  return typeof v === 'object' && v !== null;
}

/** the parent container and key/index that `path` leads to (each step picks a child modulo the count) */
function resolve(doc: unknown, path: readonly number[]): { parent: Container; key: string | number } | undefined {
  let parent: unknown = doc;
  let target: { parent: Container; key: string | number } | undefined;
  for (const step of path) {
    if (!isContainer(parent)) break;
    const keys: (string | number)[] = Array.isArray(parent) ? parent.map((_, i) => i) : Object.keys(parent);
    if (keys.length === 0) break;
    const key = keys[step % keys.length]!;
    target = { parent, key };
    parent = (parent as Record<string | number, unknown>)[key];
  }
  return target;
}

/** the mutated document as bytes */
export function applyJsonMutations(original: unknown, mutations: readonly JsonMutation[]): Uint8Array {
  const doc = structuredClone(original) as unknown;
  const textMutations: JsonMutation[] = [];
  const duplicates: { key: string; value: unknown }[] = [];
  for (const m of mutations) {
    if (m.kind === 'delete' || m.kind === 'set' || m.kind === 'rename' || m.kind === 'add') {
      const at = resolve(doc, m.path);
      if (!at) continue;
      const holder = at.parent as Record<string | number, unknown>;
      if (m.kind === 'delete') {
        if (Array.isArray(at.parent)) at.parent.splice(at.key as number, 1);
        else delete holder[at.key];
      } else if (m.kind === 'set') holder[at.key] = m.value;
      else if (m.kind === 'rename' && !Array.isArray(at.parent)) {
        const v = holder[at.key];
        delete holder[at.key];
        holder[m.name] = v;
      } else if (m.kind === 'add') {
        const child = holder[at.key];
        if (isContainer(child) && !Array.isArray(child)) (child as Record<string, unknown>)[m.key] = m.value;
        else holder[m.key as never] = m.value;
      }
    } else if (m.kind === 'set-key') {
      if (isContainer(doc) && !Array.isArray(doc)) (doc as Record<string, unknown>)[m.key] = m.value;
    } else if (m.kind === 'set-path') {
      let holder: unknown = doc;
      for (const k of m.keys.slice(0, -1)) holder = isContainer(holder) ? (holder as Record<string, unknown>)[k] : undefined;
      if (isContainer(holder) && !Array.isArray(holder)) (holder as Record<string, unknown>)[m.keys[m.keys.length - 1]!] = m.value;
    } else if (m.kind === 'duplicate-key') duplicates.push(m);
    else textMutations.push(m);
  }
  let text = JSON.stringify(doc) ?? 'null';
  for (const d of duplicates) {
    // JSON.parse keeps the last of a repeated key: insert it after the opening brace and again at the end
    if (text.startsWith('{') && text.length > 2) text = `{${JSON.stringify(d.key)}:${JSON.stringify(d.value) ?? 'null'},${text.slice(1)}`;
  }
  let bytes = new TextEncoder().encode(text);
  for (const m of textMutations) {
    if (m.kind === 'truncate') bytes = bytes.slice(0, Math.floor(m.at * bytes.length));
    else if (m.kind === 'replace-text') bytes = new TextEncoder().encode(m.text);
    else if (m.kind === 'non-utf8' && bytes.length > 0) {
      bytes = Uint8Array.from(bytes);
      bytes[Math.min(bytes.length - 1, Math.floor(m.at * bytes.length))] = 0xff;
    }
  }
  return bytes;
}
