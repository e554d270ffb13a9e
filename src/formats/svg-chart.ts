// Small, dependency-free SVG charts for reports: line charts (series over x) and grouped bar charts.
// Output is a standalone <svg> string that renders in browsers and in markdown viewers that allow SVG.

export interface Series {
  name: string;
  points: readonly (readonly [number, number])[];
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
  /** logarithmic y axis (values must be positive) */
  logY?: boolean;
}

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const M = { top: 34, right: 150, bottom: 42, left: 64 };

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function fmt(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1e4 || a < 1e-3 ? v.toExponential(1) : Number(v.toPrecision(3)).toString();
}

function ticks(lo: number, hi: number, n = 5): number[] {
  if (lo === hi) return [lo];
  return Array.from({ length: n }, (_, i) => lo + ((hi - lo) * i) / (n - 1));
}

function frame(o: ChartOptions, w: number, h: number, body: string, yTicks: [number, string][], xTicks: [number, string][]): string {
  const axes = [
    `<line x1="${M.left}" y1="${h - M.bottom}" x2="${w - M.right}" y2="${h - M.bottom}" stroke="#333"/>`,
    `<line x1="${M.left}" y1="${M.top}" x2="${M.left}" y2="${h - M.bottom}" stroke="#333"/>`,
    ...yTicks.map(([y, t]) => `<line x1="${M.left - 4}" y1="${y}" x2="${w - M.right}" y2="${y}" stroke="#eee"/><text x="${M.left - 6}" y="${y + 4}" text-anchor="end">${esc(t)}</text>`),
    ...xTicks.map(([x, t]) => `<text x="${x}" y="${h - M.bottom + 16}" text-anchor="middle">${esc(t)}</text>`),
    `<text x="${(M.left + w - M.right) / 2}" y="${h - 8}" text-anchor="middle">${esc(o.xLabel)}</text>`,
    `<text transform="translate(14 ${(M.top + h - M.bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`,
    `<text x="${w / 2}" y="20" text-anchor="middle" font-weight="bold">${esc(o.title)}</text>`,
  ];
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="sans-serif" font-size="11"><rect width="${w}" height="${h}" fill="white"/>${axes.join('')}${body}</svg>`;
}

function legend(names: readonly string[], w: number): string {
  return names.map((n, i) => `<rect x="${w - M.right + 10}" y="${M.top + i * 16}" width="10" height="10" fill="${COLORS[i % COLORS.length]}"/><text x="${w - M.right + 24}" y="${M.top + i * 16 + 9}">${esc(n.slice(0, 20))}</text>`).join('');
}

export function lineChart(series: readonly Series[], o: ChartOptions): string {
  const w = o.width ?? 640;
  const h = o.height ?? 300;
  const pts = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y) && (!o.logY || y > 0));
  if (pts.length === 0) return frame(o, w, h, '', [], []);
  const ty = (y: number): number => (o.logY ? Math.log10(y) : y);
  const [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...pts.map((p) => ty(p[1]))), Math.max(...pts.map((p) => ty(p[1])))];
  if (y0 === y1) [y0, y1] = [y0 - 1, y1 + 1];
  const sx = (x: number): number => M.left + ((x - x0) / (x1 - x0 || 1)) * (w - M.left - M.right);
  const sy = (y: number): number => h - M.bottom - ((ty(y) - y0) / (y1 - y0)) * (h - M.top - M.bottom);
  const body = series
    .map((s, i) => {
      const d = s.points.filter(([, y]) => Number.isFinite(y) && (!o.logY || y > 0)).map(([x, y], k) => `${k ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join('');
      const dots = s.points.length <= 40 ? s.points.map(([x, y]) => `<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="2.5" fill="${COLORS[i % COLORS.length]}"/>`).join('') : '';
      return `<path d="${d}" fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="1.5"/>${dots}`;
    })
    .join('');
  const yTicks = ticks(y0, y1).map((v): [number, string] => [sy(o.logY ? 10 ** v : v), fmt(o.logY ? 10 ** v : v)]);
  const xTicks = ticks(x0, x1, Math.min(6, x1 - x0 + 1)).map((v): [number, string] => [sx(v), fmt(Math.round(v * 100) / 100)]);
  return frame(o, w, h, body + legend(series.map((s) => s.name), w), yTicks, xTicks);
}

/** bars per category, one bar per series in each group */
export function barChart(categories: readonly string[], series: readonly { name: string; values: readonly number[] }[], o: ChartOptions): string {
  const w = o.width ?? 640;
  const h = o.height ?? 300;
  const all = series.flatMap((s) => s.values).filter(Number.isFinite);
  const top = Math.max(0, ...all) * 1.1 || 1;
  const bottom = Math.min(0, ...all);
  const sy = (y: number): number => h - M.bottom - ((y - bottom) / (top - bottom)) * (h - M.top - M.bottom);
  const groupW = (w - M.left - M.right) / Math.max(1, categories.length);
  const barW = (groupW * 0.8) / Math.max(1, series.length);
  const body = series
    .flatMap((s, i) =>
      s.values.map((v, c) => {
        if (!Number.isFinite(v)) return '';
        const x = M.left + c * groupW + groupW * 0.1 + i * barW;
        const y = sy(Math.max(v, 0));
        return `<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(barW - 1).toFixed(1)}" height="${Math.abs(sy(v) - sy(0)).toFixed(1)}" fill="${COLORS[i % COLORS.length]}"><title>${esc(`${s.name} ${categories[c]}: ${fmt(v)}`)}</title></rect>`;
      }),
    )
    .join('');
  const yTicks = ticks(bottom, top).map((v): [number, string] => [sy(v), fmt(v)]);
  const xTicks = categories.map((c, i): [number, string] => [M.left + i * groupW + groupW / 2, c]);
  return frame(o, w, h, body + legend(series.map((s) => s.name), w), yTicks, xTicks);
}
