// Step `report`: report.md / report.html from the metrics the other steps returned: perplexity and KL, per-layer
// module errors of each quantizing stage (with charts), smoothing scale statistics, AutoRound loss curves and
// any dampening escalations. Reads only step results (meta.json), never tensors.

import type { Json } from '../cache/key.js';
import { num, writeReport, type Block } from '../formats/report.js';
import { barChart, lineChart, type Series } from '../formats/svg-chart.js';
import { inputList, optionalInput, type StepImpl, type StepInputDir } from './types.js';

export interface ReportParams {
  title: string;
  model: string;
  stages: { kind: string; summary: string }[];
  /** written models an output format evaluated (input role, report name), after fp and fake-quantized; absent when none */
  evaluations?: { role: string; label: string }[];
}

type Obj = Record<string, Json>;
const isObj = (v: Json | undefined): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** scalar fields of an object, nested objects flattened with dots (`scale.min`) */
function scalars(o: Obj, prefix = ''): [string, Json][] {
  return Object.entries(o).flatMap(([k, v]): [string, Json][] => (isObj(v) ? scalars(v, `${prefix}${k}.`) : Array.isArray(v) ? [] : [[`${prefix}${k}`, v]]));
}

function moduleBlocks(stage: number, kind: string, layers: StepInputDir[]): Block[] {
  const rows: string[][] = [];
  const metrics = new Set<string>();
  const perModule = new Map<string, Map<string, Series>>();
  for (const s of layers) {
    const r = s.result as Obj;
    if (!isObj(r['modules'])) continue;
    for (const [m, v] of Object.entries(r['modules'])) {
      if (!isObj(v)) continue;
      for (const [k, x] of scalars(v)) {
        metrics.add(k);
        if (typeof x === 'number' && /error/.test(k)) {
          const bySeries = perModule.get(k) ?? new Map<string, Series>();
          const series = bySeries.get(m) ?? { name: m.replace(/^self_attn\.|^mlp\./, ''), points: [] };
          (series.points as [number, number][]).push([r['layer'] as number, x]);
          bySeries.set(m, series);
          perModule.set(k, bySeries);
        }
      }
    }
  }
  if (metrics.size === 0) return [];
  const cols = [...metrics];
  for (const s of layers) {
    const r = s.result as Obj;
    if (!isObj(r['modules'])) continue;
    for (const [m, v] of Object.entries(r['modules'])) {
      if (!isObj(v)) continue;
      const flat = Object.fromEntries(scalars(v));
      rows.push([String(r['layer']), m, ...cols.map((c) => num(flat[c]))]);
    }
  }
  const blocks: Block[] = [{ type: 'table', head: ['layer', 'module', ...cols], rows }];
  for (const [metric, bySeries] of perModule) {
    blocks.push({
      type: 'chart',
      name: `stage${stage}-${kind}-${metric.replace(/[^a-z0-9]+/gi, '-')}`,
      svg: lineChart([...bySeries.values()], { title: `stage ${stage} (${kind}): ${metric} per layer`, xLabel: 'layer', yLabel: metric, logY: true }),
    });
  }
  return blocks;
}

function mappingBlocks(layers: StepInputDir[]): Block[] {
  const rows: { layer: string; cells: Map<string, Json> }[] = [];
  const cols = new Set<string>();
  for (const s of layers) {
    const r = s.result as Obj;
    if (!Array.isArray(r['mappings'])) continue;
    for (const m of r['mappings']) {
      if (!isObj(m)) continue;
      const cells = new Map(scalars(m).filter(([k]) => k !== 'smooth'));
      for (const k of cells.keys()) cols.add(k);
      rows.push({ layer: `${r['layer']} ${String(m['smooth'])}`, cells });
    }
  }
  if (rows.length === 0) return [];
  const head = [...cols];
  return [{ type: 'table', head: ['layer / smooth', ...head], rows: rows.map((r) => [r.layer, ...head.map((c) => num(r.cells.get(c)))]) }];
}

function curveBlocks(stage: number, kind: string, layers: StepInputDir[]): Block[] {
  const byField = new Map<string, Series[]>();
  for (const s of layers) {
    const r = s.result as Obj;
    for (const [k, v] of Object.entries(r)) {
      if (!Array.isArray(v) || v.length < 3) continue;
      // a curve: plain numbers (x = index) or [x, y] pairs
      const pairs = v.every((p) => Array.isArray(p) && p.length === 2 && p.every((x) => typeof x === 'number'));
      if (!pairs && !v.every((x) => typeof x === 'number')) continue;
      const points = pairs ? (v as [number, number][]) : (v as number[]).map((y, i): [number, number] => [i, y]);
      const series = byField.get(k) ?? [];
      series.push({ name: `layer ${r['layer']}`, points });
      byField.set(k, series);
    }
  }
  return [...byField].map(([field, series]): Block => ({
    type: 'chart',
    name: `stage${stage}-${kind}-${field.replace(/[^a-z0-9]+/gi, '-')}`,
    svg: lineChart(series, { title: `stage ${stage} (${kind}): ${field} per block`, xLabel: 'iteration', yLabel: field, logY: true }),
  }));
}

export const reportStep: StepImpl<'report', ReportParams> = {
  kind: 'report',
  async run(ctx) {
    const p = ctx.params;
    const result = (role: string): Obj | undefined => optionalInput(ctx, role)?.result as Obj | undefined;
    const [fp, q] = [result('fp'), result('quantized')];
    const written = (p.evaluations ?? []).flatMap((e) => {
      const r = result(e.role);
      return r ? [{ label: e.label, r }] : [];
    });
    const blocks: Block[] = [
      { type: 'heading', level: 1, text: `quantforge report: ${p.title}` },
      { type: 'paragraph', text: `Model \`${p.model}\`; stages: ${p.stages.map((s, i) => `${i + 1}. ${s.kind} (${s.summary})`).join('; ')}.` },
    ];
    if (fp || q) {
      blocks.push({ type: 'heading', level: 2, text: 'Perplexity' });
      blocks.push({
        type: 'table',
        head: ['model', 'perplexity', 'mean NLL', 'KL(fp ‖ q)', 'tokens'],
        rows: [
          ...(fp ? [['fp32', num(fp['perplexity']), num(fp['nll']), '–', num(fp['tokens'])]] : []),
          ...(q ? [['fake-quantized', num(q['perplexity']), num(q['nll']), num(q['kl'], 5), num(q['tokens'])]] : []),
          ...written.map(({ label, r }) => [label, num(r['perplexity']), num(r['nll']), '–', num(r['tokens'])]),
        ],
      });
      const models: [string, Obj | undefined][] = [['fp32', fp], ['fake-quantized', q], ...written.map(({ label, r }): [string, Obj] => [label, r])];
      const present = models.map(([n, r]) => [n, r?.['perplexity']] as const).filter(([, v]) => typeof v === 'number');
      blocks.push({ type: 'chart', name: 'perplexity', svg: barChart(present.map(([n]) => n), [{ name: 'perplexity', values: present.map(([, v]) => v as number) }], { title: 'Perplexity', xLabel: 'model', yLabel: 'perplexity' }) });
    }
    p.stages.forEach((s, i) => {
      const layers = inputList(ctx, `stage${i + 1}`);
      if (layers.length === 0) return;
      blocks.push({ type: 'heading', level: 2, text: `Stage ${i + 1}: ${s.kind}` });
      blocks.push(...mappingBlocks(layers), ...moduleBlocks(i + 1, s.kind, layers), ...curveBlocks(i + 1, s.kind, layers));
    });
    await writeReport(ctx.outDir, p.title, blocks);
    return { blocks: blocks.length, charts: blocks.filter((b) => b.type === 'chart').length };
  },
};
