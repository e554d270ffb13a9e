// What an S3 step store's bucket holds, read from one listing: every <kind>/<key>/ with its meta.json
// checked against the listed files, how many bytes each takes, and the deletions gc and clean make (meta.json
// first, so a key stops being an entry at once). The layout is described in s3-store.ts.

import { parseMeta, RESERVED_FILES, type EntryMeta } from './entry-meta.js';
import { RESERVED_ROOT_NAMES, type GcOptions, type GcReport, type RemovedEntry } from './gc.js';
import { isDigest, type Digest } from './key.js';
import type { ListedObject, S3Bucket } from './s3-bucket.js';

export const META = 'meta.json';

/** what one <kind>/<key>/ holds in the bucket */
export interface RemoteKey {
  kind: string;
  key: Digest;
  /** meta.json's size, undefined when there is none (an upload in progress or abandoned) */
  metaBytes?: number;
  meta?: EntryMeta;
  problem?: string;
  /** upload folder → its objects */
  uploads: Map<string, ListedObject[]>;
}

/** every <kind>/<key>/ in the bucket, with its meta.json checked against the listing */
export async function scanBucket(bucket: S3Bucket, concurrency: number): Promise<RemoteKey[]> {
  const byKey = new Map<string, { kind: string; key: Digest; objects: ListedObject[] }>();
  for (const o of await bucket.list('')) {
    const [kind, key] = o.rel.split('/');
    if (!kind || !key || RESERVED_ROOT_NAMES.includes(kind) || !/^[a-z][a-z0-9-]*$/.test(kind) || !isDigest(key)) continue;
    const id = `${kind}/${key}`;
    let group = byKey.get(id);
    if (!group) byKey.set(id, (group = { kind, key, objects: [] }));
    group.objects.push(o);
  }
  return mapLimit([...byKey.values()], concurrency, async ({ kind, key, objects }) => {
    const base = `${kind}/${key}/`;
    const uploads = new Map<string, ListedObject[]>();
    for (const o of objects) {
      const rest = o.rel.slice(base.length);
      if (rest === META) continue;
      const folder = rest.split('/')[0]!;
      uploads.set(folder, [...(uploads.get(folder) ?? []), o]);
    }
    const metaObject = objects.find((o) => o.rel === base + META);
    if (!metaObject) return { kind, key, uploads };
    const text = await bucket.getText(base + META);
    if (text === undefined) return { kind, key, uploads };
    const checked = checkRemote(kind, key, text.text, objects);
    return { kind, key, uploads, metaBytes: metaObject.size, ...checked };
  });
}

/** meta.json first (the entry is gone at once), then the files */
export async function deleteKey(bucket: S3Bucket, kind: string, key: Digest, objects: readonly ListedObject[]): Promise<void> {
  const metaRel = `${kind}/${key}/${META}`;
  await bucket.delete([metaRel]);
  await bucket.delete(objects.map((o) => o.rel).filter((r) => r !== metaRel));
}

/**
 * Delete damaged entries and uploads without meta.json last modified before `abandonedBefore` (ms since the
 * epoch), then the oldest entries (by creation: S3 keeps no access times) until the rest fits `maxBytes`.
 * Keys in `pinned` are neither deleted nor counted as freeable.
 */
export async function gcBucket(bucket: S3Bucket, all: readonly RemoteKey[], pinned: ReadonlySet<Digest>, opts: GcOptions, abandonedBefore: number): Promise<GcReport> {
  const scanned = all.filter((r) => !pinned.has(r.key));
  const pinnedBytes = all.filter((r) => pinned.has(r.key)).reduce((s, r) => s + remoteBytes(r), 0);
  const removed: RemovedEntry[] = [];
  let abandoned = 0;
  const sound: RemoteKey[] = [];
  for (const r of scanned) {
    if (r.metaBytes !== undefined && !r.meta) {
      await deleteKey(bucket, r.kind, r.key, [...r.uploads.values()].flat());
      removed.push({ kind: r.kind, key: r.key, bytes: remoteBytes(r), reason: `damaged: ${r.problem ?? 'unknown'}` });
      continue;
    }
    const stale = [...r.uploads].filter(([name, objs]) => name !== r.meta?.upload && objs.every((o) => o.lastModifiedMs < abandonedBefore));
    for (const [, objs] of stale) await bucket.delete(objs.map((o) => o.rel));
    abandoned += stale.length;
    if (r.meta) sound.push(r);
  }
  sound.sort((a, b) => Date.parse(a.meta!.createdAt) - Date.parse(b.meta!.createdAt));
  let total = pinnedBytes + sound.reduce((s, r) => s + remoteBytes(r), 0);
  for (const r of sound) {
    if (total <= opts.maxBytes) break;
    await deleteKey(bucket, r.kind, r.key, r.uploads.get(r.meta!.upload ?? '') ?? []);
    removed.push({ kind: r.kind, key: r.key, bytes: remoteBytes(r), reason: 'oldest' });
    total -= remoteBytes(r);
  }
  return { removed, freedBytes: removed.reduce((s, r) => s + r.bytes, 0), remainingBytes: total, tempDirsRemoved: abandoned, pinnedBytes };
}

/** meta.json parsed, and every file it lists present in the listing with its size */
export function checkRemote(kind: string, key: Digest, text: string, objects: readonly ListedObject[]): { meta?: EntryMeta; problem?: string } {
  const parsed = parseMeta(text, kind, key);
  if (!parsed.ok) return { problem: parsed.problem };
  const { upload } = parsed.meta;
  if (upload === undefined) return { problem: 'meta.json names no upload folder' };
  if (RESERVED_FILES.includes(upload)) return { problem: `meta.json names the reserved upload folder "${upload}"` };
  const sizes = new Map(objects.map((o) => [o.rel, o.size]));
  for (const [rel, f] of Object.entries(parsed.meta.files)) {
    const size = sizes.get(`${kind}/${key}/${upload}/${rel}`);
    if (size === undefined) return { problem: `file "${rel}" is missing` };
    if (size !== f.size) return { problem: `file "${rel}" has ${size} bytes, meta.json says ${f.size}` };
  }
  return { meta: parsed.meta };
}

/** a sound entry: meta.json and its published files; anything else: every object under the key */
export function remoteBytes(r: RemoteKey): number {
  const published = r.meta ? (r.uploads.get(r.meta.upload ?? '') ?? []) : r.metaBytes === undefined ? [] : [...r.uploads.values()].flat();
  return (r.metaBytes ?? 0) + published.reduce((s, o) => s + o.size, 0);
}

/** `fn` over `items` with at most `limit` calls in flight; results in input order */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
