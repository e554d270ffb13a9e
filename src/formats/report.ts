// The run report as a list of blocks (headings, paragraphs, tables, charts) rendered twice: report.md with
// the charts as SVG files beside it, and a self-contained report.html with the SVG inline.

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export type Block =
  | { type: 'heading'; level: 1 | 2 | 3; text: string }
  | { type: 'paragraph'; text: string }
  | { type: 'table'; head: string[]; rows: string[][] }
  | { type: 'chart'; name: string; svg: string };

const escHtml = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const escMd = (s: string): string => s.replace(/\|/g, '\\|');

export function toMarkdown(blocks: readonly Block[]): string {
  const out: string[] = [];
  for (const b of blocks) {
    if (b.type === 'heading') out.push(`${'#'.repeat(b.level)} ${b.text}`);
    else if (b.type === 'paragraph') out.push(b.text);
    else if (b.type === 'table') {
      out.push([`| ${b.head.map(escMd).join(' | ')} |`, `|${b.head.map(() => '---').join('|')}|`, ...b.rows.map((r) => `| ${r.map(escMd).join(' | ')} |`)].join('\n'));
    } else out.push(`![${b.name}](charts/${b.name}.svg)`);
  }
  return `${out.join('\n\n')}\n`;
}

export function toHtml(title: string, blocks: readonly Block[]): string {
  const body = blocks
    .map((b) => {
      if (b.type === 'heading') return `<h${b.level}>${escHtml(b.text)}</h${b.level}>`;
      if (b.type === 'paragraph') return `<p>${escHtml(b.text).replace(/`([^`]+)`/g, '<code>$1</code>')}</p>`;
      if (b.type === 'table') {
        const head = b.head.map((h) => `<th>${escHtml(h)}</th>`).join('');
        const rows = b.rows.map((r) => `<tr>${r.map((c) => `<td>${escHtml(c)}</td>`).join('')}</tr>`).join('\n');
        return `<table><thead><tr>${head}</tr></thead><tbody>\n${rows}\n</tbody></table>`;
      }
      return `<figure>${b.svg}</figure>`;
    })
    .join('\n');
  const style = 'body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}figure{margin:1em 0}code{background:#f4f4f4;padding:0 3px}';
  return `<!doctype html>\n<html><head><meta charset="utf-8"><title>${escHtml(title)}</title><style>${style}</style></head><body>\n${body}\n</body></html>\n`;
}

/** write report.md, charts/*.svg and report.html into `dir` */
export async function writeReport(dir: string, title: string, blocks: readonly Block[]): Promise<void> {
  await mkdir(join(dir, 'charts'), { recursive: true });
  for (const b of blocks) if (b.type === 'chart') await writeFile(join(dir, 'charts', `${b.name}.svg`), b.svg);
  await writeFile(join(dir, 'report.md'), toMarkdown(blocks));
  await writeFile(join(dir, 'report.html'), toHtml(title, blocks));
}

export function num(v: unknown, digits = 4): string {
  if (typeof v !== 'number') return v === undefined || v === null ? '–' : String(v);
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1e5 || a < 1e-3 ? v.toExponential(2) : Number(v.toPrecision(digits + 1)).toString();
}
