// The comparison table of a sweep's variants (perplexity, KL), as markdown and JSON.

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Json } from '../cache/key.js';
import { outputDefs } from '../outputs/registry.js';
import type { Prepared } from './prepare.js';

interface VariantRow {
  label: string;
  params: { key: string; value: unknown }[];
  /** by evaluated model: fp, quantized, and each output format's evaluation role */
  perplexity?: Record<string, number | undefined>;
  kl?: number;
}

/** the perplexity columns: fp, quantized, then every model an output format can evaluate */
const MODELS = ['fp', 'quantized', ...Object.values(outputDefs).flatMap((d) => (d.evaluate ? [d.evaluate.role] : []))];

const fmt = (x: number | undefined, digits = 4): string => (x === undefined || x === null ? '–' : x.toFixed(digits));

export function sweepMarkdown(rows: readonly VariantRow[]): string {
  const keys = [...new Set(rows.flatMap((r) => r.params.map((p) => p.key)))];
  const head = [...keys, ...MODELS.map((m) => `ppl ${m}`), 'KL'];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const r of rows) {
    const vals = keys.map((k) => String(r.params.find((p) => p.key === k)?.value ?? ''));
    lines.push(`| ${[...vals, ...MODELS.map((m) => fmt(r.perplexity?.[m])), fmt(r.kl, 5)].join(' | ')} |`);
  }
  return lines.join('\n');
}

/** write sweep.md and sweep.json into `dir`; returns the markdown table */
export async function writeSweepTables(prepared: Prepared, metrics: Json, dir: string): Promise<string> {
  const rows = ((metrics as { variants?: VariantRow[] }).variants ?? []) as VariantRow[];
  const table = sweepMarkdown(rows);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'sweep.md'), `# Sweep of ${prepared.recipe.path}\n\n${table}\n`);
  await writeFile(join(dir, 'sweep.json'), `${JSON.stringify({ recipe: prepared.recipe.path, variants: rows }, null, 2)}\n`);
  return table;
}
