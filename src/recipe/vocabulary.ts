// Property names valid somewhere *below* a schema, and where: under a gptq stage, `group_size` lives in
// `config_groups.<name>.weights`. Used to answer a misplaced key with where it belongs.

import { isRecord } from './json-path.js';
import { schemaDocuments } from './schemas.js';

type Vocabulary = ReadonlyMap<string, string>;

let bases: WeakMap<object, string> | undefined;
const cache = new WeakMap<object, Vocabulary>();

/** name → place (`config_groups.<name>.weights`) for every property nested below `schema`, nearest first */
export function nestedProperties(schema: object): Vocabulary {
  let vocabulary = cache.get(schema);
  if (!vocabulary) {
    const found = new Map<string, string>();
    const base = baseOf(schema);
    if (base !== undefined) collect(schema, base, found);
    vocabulary = found;
    cache.set(schema, vocabulary);
  }
  return vocabulary;
}

function collect(root: object, rootBase: string, out: Map<string, string>): void {
  // breadth first, so the nearest place of a name wins
  const queue: { schema: unknown; base: string; place: string }[] = [{ schema: root, base: rootBase, place: '' }];
  const seen = new Set<unknown>();
  for (let next = queue.shift(); next; next = queue.shift()) {
    let { schema, base } = next;
    const { place } = next;
    while (isRecord(schema) && typeof schema.$ref === 'string' && !isRecord(schema.properties)) {
      const target = resolveRef(schema.$ref, base);
      if (!target) break;
      ({ schema, base } = target);
    }
    if (!isRecord(schema) || seen.has(schema)) continue;
    seen.add(schema);
    const push = (sub: unknown, at: string) => queue.push({ schema: sub, base, place: at });
    if (typeof schema.$ref === 'string') {
      const target = resolveRef(schema.$ref, base);
      if (target) queue.push({ ...target, place });
    }
    if (isRecord(schema.properties)) {
      for (const [name, sub] of Object.entries(schema.properties)) {
        if (place !== '' && !out.has(name)) out.set(name, place);
        push(sub, join(place, name));
      }
    }
    if (isRecord(schema.additionalProperties)) push(schema.additionalProperties, join(place, '<name>'));
    if (isRecord(schema.items)) push(schema.items, `${place}[i]`);
    push(schema.then, place);
    push(schema.else, place);
    for (const key of ['oneOf', 'anyOf', 'allOf'] as const) {
      const list = schema[key];
      if (Array.isArray(list)) for (const sub of list) push(sub, place);
    }
  }
}

function join(place: string, name: string): string {
  return place === '' ? name : `${place}.${name}`;
}

function resolveRef(ref: string, base: string): { schema: unknown; base: string } | undefined {
  const url = new URL(ref, base);
  const pointer = decodeURIComponent(url.hash.slice(1));
  url.hash = '';
  let node: unknown = schemaDocuments().get(url.href);
  for (const part of pointer.split('/').slice(1)) node = isRecord(node) ? node[part.replace(/~1/g, '/').replace(/~0/g, '~')] : undefined;
  return node === undefined ? undefined : { schema: node, base: url.href };
}

/** the URL of the schema file an object belongs to */
function baseOf(schema: object): string | undefined {
  if (!bases) {
    bases = new WeakMap();
    for (const [url, document] of schemaDocuments()) mark(document, url, bases);
  }
  return bases.get(schema);
}

function mark(node: unknown, url: string, into: WeakMap<object, string>): void {
  if (typeof node !== 'object' || node === null || into.has(node)) return;
  into.set(node, url);
  for (const child of Object.values(node)) mark(child, url, into);
}
