// quantforge's GGUF block quantizers against ggml's own, live: ggml-golden.c (compiled here against the
// libggml-base.so node-llama-cpp ships) quantizes the fixture's rows and fresh seeded ones, and quantforge
// must write the same bytes and dequantize to the same floats, with and without an importance matrix.
// Without a C compiler this skips; QUANTFORGE_REQUIRE_SHARED=1 (CI) makes that a failure.

import { rmSync } from 'node:fs';
import { afterAll, describe, expect, test } from 'vitest';
import { decodeTensor, encodeTensor } from '../../src/quant/gguf-quantize.js';
import { GGML_TYPES } from '../../src/quant/gguf-types.js';
import { seededRandom } from '../../src/random.js';
import { buildGgmlGolden, GOLDEN_TYPES, runGgmlGolden, type GgmlRow } from './ggml-c.js';
import { ggmlGolden } from './ggml-golden.js';

const build = buildGgmlGolden();
afterAll(() => {
  if (build.ok) rmSync(build.dir, { recursive: true, force: true });
});

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** seeded rows of 256 in the shapes that stress block quantizers: spread, tails, ties, zeros, scale extremes */
function freshRows(seed: number, perKind: number): { name: string; x: Float32Array }[] {
  const rand = seededRandom(seed);
  const normal = (): number => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const kinds: Record<string, (i: number) => number> = {
    normal: () => normal(),
    'heavy tail': () => normal() / Math.max(0.05, rand()),
    'all positive': () => Math.abs(normal()) + 0.5,
    'quarter grid (ties)': () => Math.floor(rand() * 40 - 20) / 4,
    'zero sub-blocks': (i) => (Math.floor(i / 16) % 3 === 0 ? 0 : normal()),
    'one outlier': (i) => (i === 37 ? 40 : normal() * 0.02),
    tiny: () => normal() * 1e-6,
    huge: () => normal() * 3e4,
  };
  const rows: { name: string; x: Float32Array }[] = [];
  for (const [kind, value] of Object.entries(kinds)) {
    for (let k = 0; k < perKind; k++) rows.push({ name: `${kind} #${k}`, x: Float32Array.from({ length: 256 }, (_, i) => value(i)) });
  }
  return rows;
}

/** an imatrix-like importance: squared activations, a few zero */
function freshImportance(seed: number): Float32Array {
  const rand = seededRandom(seed);
  return Float32Array.from({ length: 256 }, (_, i) => (i % 41 === 7 ? 0 : Math.log(1 - rand()) ** 2));
}

function expectSameAsGgml(rows: readonly { name: string; x: Float32Array }[], importance: Float32Array, ggml: readonly GgmlRow[]): void {
  rows.forEach((row, i) => {
    for (const t of GOLDEN_TYPES) {
      const type = GGML_TYPES[t];
      const bytes = encodeTensor(type, row.x, 1, 256);
      expect(hex(bytes), `${t} ${row.name}`).toBe(hex(ggml[i]!.blocks[t]));
      expect(Array.from(decodeTensor(type, bytes, 1, 256)), `${t} ${row.name} dequantized`).toEqual(Array.from(ggml[i]!.dequantized[t]));
      expect(hex(encodeTensor(type, row.x, 1, 256, importance)), `${t} ${row.name} with importance`).toBe(hex(ggml[i]!.blocksWithImportance[t]));
    }
  });
}

function describeGgml(name: string, body: (bin: string) => void): void {
  if (build.ok) describe(name, () => body(build.bin));
  else if (process.env['QUANTFORGE_REQUIRE_SHARED'] === '1') {
    describe(name, () => {
      test('needs a C compiler', () => {
        throw new Error(`QUANTFORGE_REQUIRE_SHARED=1 but ggml-golden.c cannot be built: ${build.why}`);
      });
    });
  } else describe.skip(name, () => body(''));
}

describeGgml('ggml, live', (bin) => {
  test('ggml writes today the bytes test/fixtures/gguf/ggml-golden.json holds', () => {
    const golden = ggmlGolden();
    const ggml = runGgmlGolden(bin, golden.importance, golden.rows.map((r) => r.x));
    golden.rows.forEach((row, i) => {
      for (const t of GOLDEN_TYPES) {
        expect(hex(ggml[i]!.blocks[t]), `${t} ${row.name}`).toBe(hex(row.blocks[t]));
        expect(hex(ggml[i]!.blocksWithImportance[t]), `${t} ${row.name} with importance`).toBe(hex(row.blocksWithImportance[t]));
        expect(Array.from(ggml[i]!.dequantized[t]), `${t} ${row.name} dequantized`).toEqual(Array.from(row.dequantized[t]));
      }
    });
  });

  test('every block type writes ggml’s bytes on 160 fresh rows, with and without an importance matrix', () => {
    const rows = freshRows(2025, 20);
    const importance = freshImportance(2026);
    expectSameAsGgml(rows, importance, runGgmlGolden(bin, importance, rows.map((r) => r.x)));
  });
});
