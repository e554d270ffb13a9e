// Small helpers shared by the benchmarks: median, a markdown table, how busy other processes kept the machine, the
// process's resident memory (now, and its peak sampled by a thread while onnxruntime blocks the main one), and the
// CPU time of each of its threads.

import { readdirSync, readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';

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

/** this process's resident memory now, MiB (VmRSS) */
export const rssMb = (): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) / 1024;

/**
 * the highest VmRSS (MiB) since the last reset or take, sampled every `everyMs` by a worker thread (onnxruntime
 * runs block the main thread)
 */
export function rssSampler(everyMs: number): { reset(): void; peakMb(): number; take(): number; stop(): Promise<number> } {
  const s = new Int32Array(new SharedArrayBuffer(12));
  const w = new Worker(
    `
    const { workerData } = require('node:worker_threads');
    const { readFileSync } = require('node:fs');
    const s = new Int32Array(workerData.buffer);
    while (Atomics.load(s, 1) === 0) {
      const kb = Number(/VmRSS:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
      if (kb > Atomics.load(s, 0)) Atomics.store(s, 0, kb);
      Atomics.wait(s, 2, 0, workerData.everyMs);
    }`,
    { eval: true, workerData: { buffer: s.buffer, everyMs } },
  );
  return {
    reset: () => Atomics.store(s, 0, 0),
    peakMb: () => Atomics.load(s, 0) / 1024,
    take: () => Atomics.exchange(s, 0, 0) / 1024,
    stop: () => {
      Atomics.store(s, 1, 1);
      return w.terminate();
    },
  };
}

/**
 * CPU milliseconds (user + system) of each thread of this process by thread id, from /proc (Linux; empty elsewhere):
 * the difference of two readings says which threads did the work (onnxruntime's intra-op threads beside the main one)
 */
export function threadCpuMs(): Map<string, number> {
  const out = new Map<string, number>();
  let tids: string[] = [];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      // fields after the parenthesised name: utime and stime are the 12th and 13th, in clock ticks (100 per second)
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(tid, (Number(f[11]) + Number(f[12])) * 10);
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return out;
}
