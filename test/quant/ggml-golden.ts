// Inputs and the bytes ggml's own reference quantizers wrote for them (test/fixtures/gguf/ggml-golden.json,
// written by ggml-golden.c through ggml-c.ts from node-llama-cpp's libggml-base.so).

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { GgufBlockTypeName } from '../../src/quant/gguf-quantize.js';

export interface GoldenRow {
  name: string;
  x: Float32Array;
  blocks: Record<GgufBlockTypeName, Uint8Array>;
  dequantized: Record<GgufBlockTypeName, Float32Array>;
  /** the bytes with the golden importance vector (ggml's quantize_row_<type>_impl) */
  blocksWithImportance: Record<GgufBlockTypeName, Uint8Array>;
}

const floats = (b64: string): Float32Array => {
  const b = Buffer.from(b64, 'base64');
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
};

const bytesOf = (byType: Record<string, string>) =>
  Object.fromEntries(Object.entries(byType).map(([t, hex]) => [t, new Uint8Array(Buffer.from(hex, 'hex'))])) as GoldenRow['blocks'];

export function ggmlGolden(): { importance: Float32Array; rows: GoldenRow[] } {
  const raw = JSON.parse(readFileSync(resolve(import.meta.dirname, '../fixtures/gguf/ggml-golden.json'), 'utf8')) as {
    importance: string;
    rows: { name: string; x: string; blocks: Record<string, string>; dequantized: Record<string, string>; blocksWithImportance: Record<string, string> }[];
  };
  return {
    importance: floats(raw.importance),
    rows: raw.rows.map((r) => ({
      name: r.name,
      x: floats(r.x),
      blocks: bytesOf(r.blocks),
      dequantized: Object.fromEntries(Object.entries(r.dequantized).map(([t, b]) => [t, floats(b)])) as GoldenRow['dequantized'],
      blocksWithImportance: bytesOf(r.blocksWithImportance),
    })),
  };
}
