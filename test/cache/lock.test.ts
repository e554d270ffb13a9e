import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { sha256File } from '../../src/cache/file-digest.js';
import { computeKey, type Digest } from '../../src/cache/key.js';
import { breakStaleLock, procStartOf, readLock, tryCreateLock } from '../../src/cache/lock-file.js';
import { withCacheExclusive, withStepLock } from '../../src/cache/lock.js';
import { DirStore } from '../../src/cache/dir-store.js';
import type { StepStore } from '../../src/cache/step-store.js';
import { recordFor } from './cache-contract.js';

const CHILD = join(import.meta.dirname, 'fixtures', 'cache-child.ts');
const RACE_KEY = computeKey({ cacheFormat: 1, kind: 'demo', version: 1, params: { race: true }, inputs: {}, files: {}, tools: {} });

interface Child {
  proc: ChildProcess;
  lines: string[];
  /** resolves with the first stdout line (seen so far or later) that matches */
  line(match: RegExp): Promise<string>;
  send(text: string): void;
  exit: Promise<number | null>;
}

const children: Child[] = [];

function child(mode: string, ...args: string[]): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD, mode, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const waiters: { match: RegExp; resolve: (l: string) => void }[] = [];
  let buffered = '';
  let stderr = '';
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const l = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      lines.push(l);
      for (const w of waiters.filter((w) => w.match.test(l))) w.resolve(l);
    }
  });
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exit = new Promise<number | null>((resolve) =>
    proc.on('exit', (code) => {
      if (code) console.error(`child ${mode} exited with ${code}:\n${stderr}`);
      resolve(code);
    }),
  );
  const c: Child = {
    proc,
    lines,
    exit,
    line: (match) =>
      new Promise((resolve, reject) => {
        const seen = lines.find((l) => match.test(l));
        if (seen !== undefined) return resolve(seen);
        waiters.push({ match, resolve });
        void exit.then(() => reject(new Error(`child ${mode} exited before printing ${match}; printed ${JSON.stringify(lines)}; stderr: ${stderr}`)));
      }),
    send: (text) => proc.stdin!.write(`${text}\n`),
  };
  children.push(c);
  return c;
}

/** the pid of a process that has exited */
async function deadPid(): Promise<number> {
  const p = spawn(process.execPath, ['-e', '']);
  await new Promise((r) => p.on('exit', r));
  return p.pid!;
}

/** for calls that must not wait: turns a wait into a failure instead of a hang */
const noWait = (message: string) => {
  throw new Error(`unexpected wait: ${message}`);
};

const until = async (cond: () => boolean) => {
  while (!cond()) await new Promise((r) => setTimeout(r, 10));
};

let root: string;
let work: string;
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'qf-lock-'));
  root = join(work, 'cache');
});
afterEach(async () => {
  for (const c of children.splice(0)) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
  await rm(work, { recursive: true, force: true });
});

describe('concurrent runs on one cache', () => {
  test.each(['lock', 'nolock'])('three processes racing on one key (%s) all succeed with identical outputs', async (useLock) => {
    const counter = join(work, 'computed');
    await writeFile(counter, '');
    const racers = [0, 1, 2].map((i) => child('race', root, join(work, `out-${i}`), counter, useLock));
    await Promise.all(racers.map((r) => r.line(/^ready$/)));
    for (const r of racers) r.send('go');
    expect(await Promise.all(racers.map((r) => r.exit))).toEqual([0, 0, 0]);

    const computedBy = (await readFile(counter, 'utf8')).trim().split('\n');
    if (useLock === 'lock') {
      expect(computedBy).toHaveLength(1);
      expect(racers.flatMap((r) => r.lines).filter((l) => l.startsWith('waiting: '))).not.toEqual([]);
    } else {
      // all started together, so several computed and their commits raced
      expect(computedBy.length).toBeGreaterThan(1);
    }
    const cache = new DirStore(root);
    const entry = await cache.lookup('demo', RACE_KEY);
    expect(entry && (await cache.verify(entry))).toEqual({ ok: true });
    expect(await readdir(join(root, 'demo'))).toEqual([RACE_KEY]);
    expect(await readdir(join(root, 'tmp')).catch(() => [])).toEqual([]);
    const digests = await Promise.all([0, 1, 2].map((i) => sha256File(join(work, `out-${i}`, 'part-7.bin'))));
    expect(new Set(digests).size).toBe(1);
    for (const i of [0, 1, 2]) expect((await readdir(join(work, `out-${i}`))).sort()).toEqual(Object.keys(entry!.meta.files).sort());
  });
});

describe('withStepLock', () => {
  test('waits while a live process holds the lock and says which one', async () => {
    const holder = child('hold-lock', root);
    await holder.line(/^locked$/);
    const waits: string[] = [];
    let ran = false;
    const mine = withStepLock(root, RACE_KEY, async () => {
      ran = true;
    }, { onWait: (m) => waits.push(m) });
    await until(() => waits.length > 0 || ran);
    expect(waits[0]).toContain(`waiting for process ${holder.proc.pid} `);
    expect(ran).toBe(false);
    holder.send('go');
    await mine;
    expect(ran).toBe(true);
    expect(await holder.exit).toBe(0);
  });

  test('breaks a lock left by a process that was killed', async () => {
    const holder = child('hold-lock', root);
    await holder.line(/^locked$/);
    holder.proc.kill('SIGKILL');
    await holder.exit;
    const lockFile = join(root, 'locks', `${RACE_KEY}.lock`);
    expect(existsSync(lockFile)).toBe(true);
    expect(await withStepLock(root, RACE_KEY, async () => 'ran', { onWait: noWait })).toBe('ran');
    expect(existsSync(lockFile)).toBe(false);
  });

  test.runIf(existsSync('/proc/self/stat'))('breaks a lock whose pid now belongs to another process', async () => {
    const lockFile = join(root, 'locks', `${RACE_KEY}.lock`);
    await mkdir(join(root, 'locks'), { recursive: true });
    const owner = { pid: process.pid, hostname: hostname(), startedAt: new Date(0).toISOString(), procStart: `${procStartOf(process.pid)}0`, token: 'x' };
    await writeFile(lockFile, JSON.stringify(owner));
    expect(await withStepLock(root, RACE_KEY, async () => 'ran', { onWait: noWait })).toBe('ran');
  });

  test('takes over a lock file of a dead process on this host, with a warning', async () => {
    const lockFile = join(root, 'locks', `${RACE_KEY}.lock`);
    await mkdir(join(root, 'locks'), { recursive: true });
    const pid = await deadPid();
    await writeFile(lockFile, JSON.stringify({ pid, hostname: hostname(), startedAt: '2026-01-01T00:00:00.000Z', token: 'dead' }));
    const warnings: string[] = [];
    const store = new DirStore(root, { onWarn: (m) => warnings.push(m) });
    expect(await store.withStepLock(RACE_KEY, async () => 'ran', { onWait: noWait })).toBe('ran');
    expect(warnings).toEqual([`took over the lock of step ${RACE_KEY.slice(0, 12)} from process ${pid} (since 2026-01-01T00:00:00.000Z): the process is gone`]);
    expect(existsSync(lockFile)).toBe(false);
  });

  test('takes over a lock of another host whose heartbeat stopped, and waits while it beats', async () => {
    const lockFile = join(root, 'locks', `${RACE_KEY}.lock`);
    await mkdir(join(root, 'locks'), { recursive: true });
    await writeFile(lockFile, JSON.stringify({ pid: 4711, hostname: 'node-b', startedAt: '2026-01-01T00:00:00.000Z', token: 'b' }));
    const warnings: string[] = [];
    const store = new DirStore(root, { onWarn: (m) => warnings.push(m) });
    // a fresh heartbeat (mtime): another host's live lock is waited for
    const waits: string[] = [];
    await expect(store.withStepLock(RACE_KEY, async () => 'ran', { timeoutMs: 100, onWait: (m) => waits.push(m) })).rejects.toMatchObject({ reason: 'cache-lock-timeout' });
    expect(waits).toEqual([expect.stringContaining('waiting for process 4711 on host node-b (since 2026-01-01T00:00:00.000Z)')]);
    const old = new Date(Date.now() - 5 * 60_000);
    await utimes(lockFile, old, old);
    expect(await store.withStepLock(RACE_KEY, async () => 'ran', { onWait: noWait })).toBe('ran');
    expect(warnings).toEqual([expect.stringMatching(/^took over the lock of step \w+ from process 4711 on host node-b \(since .*\): its heartbeat stopped 300 s ago \(limit 120 s\)$/)]);
  });

  test('a held lock file names its owner: pid, host, start time', async () => {
    const held = await tryCreateLock(join(root, 'locks', 'x.lock'));
    try {
      const text = await readFile(held!.path, 'utf8');
      expect(JSON.parse(text)).toMatchObject({ pid: process.pid, hostname: hostname(), startedAt: expect.any(String), token: expect.any(String) });
    } finally {
      await held!.release();
    }
  });

  test('a stale lock whose heartbeat moved since it was judged stale is not removed', async () => {
    const lockFile = join(root, 'locks', `${RACE_KEY}.lock`);
    await mkdir(join(root, 'locks'), { recursive: true });
    await writeFile(lockFile, JSON.stringify({ pid: 4711, hostname: 'node-b', startedAt: new Date(0).toISOString(), token: 'b' }));
    const old = new Date(Date.now() - 5 * 60_000);
    await utimes(lockFile, old, old);
    const seen = (await readLock(lockFile))!;
    // the holder was only slow: its heartbeat lands before the breaker re-checks
    const now = new Date();
    await utimes(lockFile, now, now);
    expect(await breakStaleLock(lockFile, seen)).toBe(false);
    expect(existsSync(lockFile)).toBe(true);
  });

  test('gives up after timeoutMs with a cache-lock-timeout error', async () => {
    const held = await tryCreateLock(join(root, 'locks', `${RACE_KEY}.lock`));
    try {
      await expect(withStepLock(root, RACE_KEY, async () => 'ran', { timeoutMs: 50 })).rejects.toMatchObject({
        reason: 'cache-lock-timeout',
      });
    } finally {
      await held!.release();
    }
  });

  test('releases the lock when the function throws', async () => {
    await expect(withStepLock(root, RACE_KEY, async () => Promise.reject(new Error('step failed')))).rejects.toThrow('step failed');
    expect(await withStepLock(root, RACE_KEY, async () => 'again', { timeoutMs: 0 })).toBe('again');
  });
});

describe('gc and clean against live runs', () => {
  async function putEntry(cache: StepStore, params: Record<string, string> = { keep: 'me' }): Promise<Digest> {
    const record = recordFor(params);
    const pending = await cache.begin('gptq', computeKey(record));
    await writeFile(join(pending.dir, 'f'), 'data');
    return (await pending.commit({ record, stepId: 's', result: null, elapsedMs: 0 })).key;
  }

  test('gc waits until a run registered by another process is done', async () => {
    const cache = new DirStore(root);
    const key = await putEntry(cache);
    const run = child('hold-run', root);
    await run.line(/^registered$/);
    const waits: string[] = [];
    let gcDone = false;
    const gc = cache.gc({ maxBytes: 0, onWait: (m) => waits.push(m) }).finally(() => (gcDone = true));
    await until(() => waits.length > 0 || gcDone);
    expect(waits[0]).toContain(`process ${run.proc.pid}`);
    expect((await cache.inspect('gptq', key)).status).toBe('hit');
    run.send('go');
    expect((await gc).removed.map((r) => r.key)).toEqual([key]);
    expect(await run.exit).toBe(0);
  });

  test('gc does not wait for a run that pins its entries, and leaves those entries alone', async () => {
    const cache = new DirStore(root);
    const pinned = await putEntry(cache, { keep: 'pinned' });
    const loose = await putEntry(cache, { keep: 'loose' });
    await mkdir(join(root, 'tmp', `pending-gptq-${(await deadPid())}-0badcafe`), { recursive: true });
    const run = child('hold-pinned-run', root, pinned);
    await run.line(/^registered$/);
    await mkdir(join(root, 'tmp', `pending-gptq-${run.proc.pid}-0badcafe`), { recursive: true });
    const report = await cache.gc({ maxBytes: 0, onWait: noWait });
    expect(report.removed.map((r) => r.key)).toEqual([loose]);
    expect(report.pinnedBytes).toBeGreaterThan(0);
    expect(report.tempDirsRemoved).toBe(1);
    expect((await cache.inspect('gptq', pinned)).status).toBe('hit');
    // the live run's pending entry stays, the dead process's went
    expect(await readdir(join(root, 'tmp'))).toEqual([`pending-gptq-${run.proc.pid}-0badcafe`]);
    run.send('go');
    expect(await run.exit).toBe(0);
    expect((await cache.gc({ maxBytes: 0, onWait: noWait })).removed.map((r) => r.key)).toEqual([pinned]);
  });

  test('gc deletes temp files and lock files that dead processes left', async () => {
    const cache = new DirStore(root);
    const dead = await deadPid();
    await mkdir(join(root, 'history'), { recursive: true });
    await mkdir(join(root, 'locks'), { recursive: true });
    await writeFile(join(root, 'history', `abc.json.tmp-${dead}-0badcafe`), '{');
    await writeFile(join(root, `digests.json.tmp-${dead}-0badcafe`), '{');
    await writeFile(join(root, 'locks', `${RACE_KEY}.lock`), JSON.stringify({ pid: dead, hostname: hostname(), startedAt: new Date().toISOString(), token: 'x' }));
    await writeFile(join(root, 'history', `live.json.tmp-${process.pid}-0badcafe`), '{');
    expect((await cache.gc({ maxBytes: 1 << 30, onWait: noWait })).tempDirsRemoved).toBe(2);
    expect(await readdir(join(root, 'history'))).toEqual([`live.json.tmp-${process.pid}-0badcafe`]);
    expect(await readdir(join(root, 'locks'))).toEqual([]);
  });

  test('a run waits while gc or clean holds the cache', async () => {
    let run: Child | undefined;
    await withCacheExclusive(root, async () => {
      run = child('hold-run', root);
      expect(await run.line(/^(waiting: |registered$)/)).toMatch(/^waiting: waiting for process \d+ .*gc\/clean in progress/);
    });
    await run!.line(/^registered$/);
    run!.send('go');
    expect(await run!.exit).toBe(0);
  });

  test('registrations of runs that died do not block gc', async () => {
    const cache = new DirStore(root);
    await mkdir(join(root, 'runs'), { recursive: true });
    const dead = { pid: await deadPid(), hostname: hostname(), startedAt: new Date().toISOString(), token: 'dead' };
    await writeFile(join(root, 'runs', 'dead.json'), JSON.stringify(dead));
    await putEntry(cache);
    expect((await cache.clean({ onWait: noWait })).entriesRemoved).toBe(1);
    expect(await readdir(join(root, 'runs'))).toEqual([]);
  });
});
