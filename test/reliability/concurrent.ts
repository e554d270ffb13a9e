// Concurrent runs (issue 15, part 4): three `quantforge run`s of one recipe on one store and the same output
// paths, started together, while `cache gc --max-size 0` runs over and over and a reader keeps parsing the
// outputs' JSON files and safetensors header. Every run must succeed, each step must be computed once
// across the three (step-done events with result 'ran'), the outputs must be complete and byte-identical to
// an undisturbed run's, the reader must never see a half-written file, and the gcs must delete only what no
// run pins (entries of another recipe, planted beforehand). Used by concurrent.test.ts and bench/concurrent.ts.

import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DirStore } from '../../src/cache/dir-store.js';
import { computeKey, type Digest, type KeyRecord } from '../../src/cache/key.js';
import { readHeaderSync } from '../../src/formats/safetensors.js';
import { fingerprintDiff, OUTPUT_DIRS, outputFingerprints, runBuild, runCli, type CliRun, type Workspace } from './workspace.js';

export interface ConcurrentReport {
  runs: { code: number | null; ran: number; cached: number }[];
  /** step ids computed more than once across the runs, with how often */
  repeated: Record<string, number>;
  /** step ids some run did not report done */
  missing: string[];
  /** differences of the outputs from the undisturbed run's */
  outputDiffs: string[];
  reads: { ok: number; absent: number; broken: string[] };
  /**
   * `whileBuilding`: gcs that found live runs' pins; `removedPinned`: entries of the recipe such a gc
   * deleted (every run pins all of them); `removedPlanted`: planted entries gone by the end
   */
  gc: { runs: number; whileBuilding: number; removedPlanted: number; removedPinned: string[]; failures: string[] };
  stderr: string[];
}

const READ_FILES = ['out/ct/quantforge.lock.json', 'out/ct/config.json', 'out/onnx/quantforge.lock.json', 'out/onnx/config.json'];

/**
 * Three runs (or `count`) at once on an empty store, with a gc loop and a reader; `ref` is an undisturbed
 * run's output fingerprints, `steps` its step ids. The outputs of that run are left in place with their
 * lock files naming another entry, so every run replaces them while the reader reads them.
 */
export async function concurrentRuns(
  ws: Workspace,
  ref: Awaited<ReturnType<typeof outputFingerprints>>,
  steps: readonly string[],
  count = 3,
): Promise<ConcurrentReport> {
  await rm(ws.cache, { recursive: true, force: true });
  for (const d of OUTPUT_DIRS) {
    const lock = join(ws.dir, d, 'quantforge.lock.json');
    const text = await readFile(lock, 'utf8');
    await writeFile(lock, text.replace(/"key": "[0-9a-f]{64}"/, '"key": "from an older build"'));
  }
  const planted = await plantEntries(ws.cache, 4);
  const builds = Array.from({ length: count }, () => runBuild(ws));
  let building = true;
  const all = Promise.all(builds).finally(() => (building = false));
  const [done, gc, reads] = await Promise.all([all, gcLoop(ws, () => building), readLoop(ws, () => building)]);
  const ran = new Map<string, number>();
  for (const r of done) for (const e of r.events) if (e.event === 'step-done' && e.result === 'ran') ran.set(e.id!, (ran.get(e.id!) ?? 0) + 1);
  const outputs = await outputFingerprints(ws);
  const remaining = new Set((await new DirStore(ws.cache).list()).map((e) => e.key));
  return {
    runs: done.map((r) => ({ code: r.code, ran: count1(r, 'ran'), cached: count1(r, 'cached') })),
    repeated: Object.fromEntries([...ran].filter(([, n]) => n > 1)),
    missing: steps.filter((id) => done.some((r) => !r.events.some((e) => e.event === 'step-done' && e.id === id))),
    outputDiffs: OUTPUT_DIRS.flatMap((d) => fingerprintDiff(ref[d], outputs[d]).map((x) => `${d}/${x}`)),
    reads,
    gc: { ...gc, removedPlanted: planted.filter((k) => !remaining.has(k)).length },
    stderr: done.filter((r) => r.code !== 0).map((r) => r.stderr.trim()),
  };
}

function count1(r: CliRun, result: string): number {
  return r.events.filter((e) => e.event === 'step-done' && e.result === result).length;
}

/** entries no run of the workspace's recipe needs: what a concurrent gc may delete */
async function plantEntries(root: string, n: number): Promise<Digest[]> {
  const store = new DirStore(root);
  const keys: Digest[] = [];
  for (let i = 0; i < n; i++) {
    const record: KeyRecord = { cacheFormat: 1, kind: 'rtn', version: 1, params: { planted: i }, inputs: {}, files: {}, tools: {} };
    const pending = await store.begin('rtn', computeKey(record));
    await writeFile(join(pending.dir, 'layer.safetensors'), Buffer.alloc(4096, i));
    keys.push((await pending.commit({ record, stepId: `planted/${i}`, result: null, elapsedMs: 0 })).key);
  }
  return keys;
}

interface GcReportJson {
  removed: { kind: string; key: string; reason: string }[];
  pinnedBytes: number;
}

/** `cache gc --max-size 0` again and again while the runs go on */
async function gcLoop(ws: Workspace, building: () => boolean): Promise<ConcurrentReport['gc']> {
  const out = { runs: 0, whileBuilding: 0, removedPlanted: 0, removedPinned: [] as string[], failures: [] as string[] };
  while (building()) {
    const r = await runCli(ws, ['cache', 'gc', '--max-size', '0', '--json', '--cache-dir', ws.cache]);
    out.runs++;
    if (r.code !== 0) {
      out.failures.push(r.stderr.trim());
      continue;
    }
    const report = r.events[0] as unknown as GcReportJson;
    // a gc that found no registration (the runs had ended, or not yet begun) may delete anything
    if (report.pinnedBytes === 0) continue;
    out.whileBuilding++;
    for (const e of report.removed) if (e.kind !== 'rtn') out.removedPinned.push(`${e.kind}/${e.key.slice(0, 12)} (${e.reason})`);
  }
  return out;
}

/** parse the outputs' JSON files and the checkpoint's safetensors header every few milliseconds */
async function readLoop(ws: Workspace, building: () => boolean): Promise<ConcurrentReport['reads']> {
  const out = { ok: 0, absent: 0, broken: [] as string[] };
  const attempt = async (rel: string, read: (path: string) => Promise<unknown>): Promise<void> => {
    try {
      await read(join(ws.dir, rel));
      out.ok++;
    } catch (e) {
      // between the two renames of a swap there is no directory: absent, never half-written
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' || /\(ENOENT\)/.test((e as Error).message)) out.absent++;
      else out.broken.push(`${rel}: ${(e as Error).message}`);
    }
  };
  while (building()) {
    for (const rel of READ_FILES) await attempt(rel, async (p) => JSON.parse(await readFile(p, 'utf8')));
    await attempt('out/ct/model.safetensors', async (p) => readHeaderSync(p));
    await new Promise((r) => setTimeout(r, 5));
  }
  return out;
}
