// onnxruntime profile traces (a Runtime created with `profileDir`, e.g. `bench/awq.ts --profile DIR`) summed:
// time per session (the kernel key in the trace's file name) and, within each, per op type, largest first.
// Node events only ("cat": "Node", the kernel's own time, not the session's run overhead).
//
//   npx tsx bench/ort-profile.ts DIR [--top 12]

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

interface TraceEvent { cat?: string; name?: string; dur?: number; args?: { op_name?: string } }

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '12' } } });
const dir = positionals[0];
if (!dir) throw new Error('usage: npx tsx bench/ort-profile.ts DIR [--top 12]');
const top = Number(values.top);

interface SessionTotal { us: number; runs: number; ops: Map<string, number> }
const sessions = new Map<string, SessionTotal>();
for (const f of readdirSync(dir).filter((n) => n.endsWith('.json')).sort()) {
  const text = readFileSync(join(dir, f), 'utf8');
  if (text.trim() === '') continue;
  const name = f.replace(/^\d+-/, '').replace(/_\d{4}-\d{2}-\d{2}_[\d-]+\.json$/, '');
  const s = sessions.get(name) ?? { us: 0, runs: 0, ops: new Map<string, number>() };
  for (const e of JSON.parse(text) as TraceEvent[]) {
    if (e.cat === 'Session' && e.name === 'model_run') s.runs++;
    if (e.cat !== 'Node' || !e.name?.endsWith('_kernel_time')) continue;
    const op = e.args?.op_name ?? '?';
    s.us += e.dur ?? 0;
    s.ops.set(op, (s.ops.get(op) ?? 0) + (e.dur ?? 0));
  }
  sessions.set(name, s);
}
const all = [...sessions.entries()].sort((a, b) => b[1].us - a[1].us);
const total = all.reduce((n, [, s]) => n + s.us, 0);
console.log(`total node time ${(total / 1e6).toFixed(2)} s in ${all.length} sessions\n`);
for (const [name, s] of all.slice(0, top)) {
  console.log(`${(s.us / 1e6).toFixed(2)} s (${((100 * s.us) / total).toFixed(1)}%), ${s.runs} runs: ${name}`);
  const ops = [...s.ops.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  console.log(`    ${ops.map(([op, us]) => `${op} ${((100 * us) / s.us).toFixed(1)}%`).join(', ')}`);
}
