// ggml's own quantizers, live: test/fixtures/gguf/ggml-golden.c compiled with the system C compiler against
// the libggml-base.so node-llama-cpp ships (the llama.cpp build the e2e tests load), then run on rows the
// tests choose. Without a C compiler the live tests skip; QUANTFORGE_REQUIRE_SHARED=1 (CI, which installs
// gcc) makes that a failure.
//
// Run as a script, it regenerates test/fixtures/gguf/ggml-golden.json (after a node-llama-cpp upgrade)
// from the inputs the file already holds:   npx tsx test/quant/ggml-c.ts

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { GGML_TYPES } from '../../src/quant/gguf-types.js';
import type { GgufBlockTypeName } from '../../src/quant/gguf-quantize.js';

const REPO = resolve(import.meta.dirname, '../..');
export const GGML_LIB_DIR = join(REPO, 'node_modules/@node-llama-cpp/linux-x64/bins/linux-x64');
const SOURCE = join(REPO, 'test/fixtures/gguf/ggml-golden.c');
const GOLDEN = join(REPO, 'test/fixtures/gguf/ggml-golden.json');

/** the types, in the order ggml-golden.c writes them */
export const GOLDEN_TYPES: readonly GgufBlockTypeName[] = ['Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q4_K', 'Q6_K'];
const N = 256;

export interface GgmlRow {
  blocks: Record<GgufBlockTypeName, Uint8Array>;
  blocksWithImportance: Record<GgufBlockTypeName, Uint8Array>;
  dequantized: Record<GgufBlockTypeName, Float32Array>;
}

export type GgmlBuild = { ok: true; bin: string; dir: string } | { ok: false; why: string };

/** compile ggml-golden.c into a fresh temp directory; `why` says what is missing when it cannot */
export function buildGgmlGolden(): GgmlBuild {
  const cc = ['cc', 'gcc', 'clang'].find((c) => spawnSync(c, ['--version'], { stdio: 'ignore' }).status === 0);
  if (!cc) return { ok: false, why: 'no C compiler (cc, gcc or clang) on PATH' };
  const dir = mkdtempSync(join(tmpdir(), 'qf-ggml-golden-'));
  const bin = join(dir, 'ggml-golden');
  const args = ['-std=c99', '-O1', '-Wall', '-o', bin, SOURCE, `-L${GGML_LIB_DIR}`, '-l:libggml-base.so', `-Wl,-rpath,${GGML_LIB_DIR}`];
  const r = spawnSync(cc, args, { encoding: 'utf8' });
  if (r.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    return { ok: false, why: `${cc} ${args.join(' ')} failed: ${r.stderr || r.error?.message}` };
  }
  return { ok: true, bin, dir };
}

/** ggml's blocks and dequantized values of each 256-value row, with and without `importance` */
export function runGgmlGolden(bin: string, importance: Float32Array, rows: readonly Float32Array[]): GgmlRow[] {
  const dir = mkdtempSync(join(tmpdir(), 'qf-ggml-run-'));
  try {
    const input = join(dir, 'in.bin');
    const output = join(dir, 'out.bin');
    writeFileSync(input, Buffer.concat([importance, ...rows].map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength))));
    const r = spawnSync(bin, [input, output], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ggml-golden exited ${r.status}: ${r.stderr}`);
    const out = readFileSync(output);
    let at = 0;
    const take = (n: number): Buffer => out.subarray(at, (at += n));
    return rows.map(() => {
      const row = { blocks: {}, blocksWithImportance: {}, dequantized: {} } as GgmlRow;
      for (const t of GOLDEN_TYPES) {
        const bytes = (N / GGML_TYPES[t].blockSize) * GGML_TYPES[t].typeSize;
        row.blocks[t] = new Uint8Array(take(bytes));
        row.blocksWithImportance[t] = new Uint8Array(take(bytes));
        const f = take(4 * N);
        row.dequantized[t] = new Float32Array(f.buffer.slice(f.byteOffset, f.byteOffset + f.length));
      }
      return row;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** ggml-golden.json rewritten with what this machine's libggml-base.so writes for the inputs it holds */
function regenerate(): void {
  const build = buildGgmlGolden();
  if (!build.ok) throw new Error(build.why);
  try {
    const raw = JSON.parse(readFileSync(GOLDEN, 'utf8')) as { importance: string; rows: { name: string; x: string }[] };
    const floats = (b64: string) => new Float32Array(new Uint8Array(Buffer.from(b64, 'base64')).buffer);
    const results = runGgmlGolden(build.bin, floats(raw.importance), raw.rows.map((r) => floats(r.x)));
    const lib = join(GGML_LIB_DIR, 'libggml-base.so');
    const version = (JSON.parse(readFileSync(join(REPO, 'node_modules/node-llama-cpp/package.json'), 'utf8')) as { version: string }).version;
    const byType = <T>(f: (t: GgufBlockTypeName) => T) => Object.fromEntries(GOLDEN_TYPES.map((t) => [t, f(t)]));
    const out = {
      source: `${relative(REPO, lib)} (node-llama-cpp ${version}), sha256 ${createHash('sha256').update(readFileSync(lib)).digest('hex')}`,
      importance: raw.importance,
      rows: raw.rows.map((r, i) => ({
        name: r.name,
        x: r.x,
        blocks: byType((t) => Buffer.from(results[i]!.blocks[t]).toString('hex')),
        dequantized: byType((t) => Buffer.from(results[i]!.dequantized[t].buffer).toString('base64')),
        blocksWithImportance: byType((t) => Buffer.from(results[i]!.blocksWithImportance[t]).toString('hex')),
      })),
    };
    writeFileSync(GOLDEN, `${JSON.stringify(out, null, 1)}\n`);
    process.stdout.write(`wrote ${relative(process.cwd(), GOLDEN)}: ${out.rows.length} rows, ${out.source}\n`);
  } finally {
    rmSync(build.dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) regenerate();
