// Small helpers shared by the benchmarks: median, a markdown table, and how busy other processes kept the machine.

import { readFileSync } from 'node:fs';

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

export function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** busy and total CPU jiffies of the whole machine (/proc/stat), or undefined where there is none */
function machineJiffies(): { busy: number; total: number } | undefined {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: total - f[3]! - f[4]!, total };
  } catch {
    return undefined;
  }
}

/**
 * How much of the machine other processes used while `fn` ran: the share of all cores' time that was busy but not
 * this process's (/proc/stat jiffies minus process.cpuUsage). On a shared machine a benchmark keeps the rounds
 * where this is small ("quiet" rounds); jiffies are 10 ms, so a round should last ≥ 100 ms. NaN off Linux.
 */
export async function foreignShare<T>(fn: () => Promise<T>): Promise<{ result: T; ms: number; foreign: number }> {
  const j0 = machineJiffies();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const result = await fn();
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  const j1 = machineJiffies();
  if (!j0 || !j1 || j1.total === j0.total) return { result, ms, foreign: NaN };
  const own = (c.user + c.system) / 10_000; // µs → jiffies (USER_HZ 100)
  return { result, ms, foreign: Math.max(0, (j1.busy - j0.busy - own) / (j1.total - j0.total)) };
}
