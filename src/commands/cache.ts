// `quantforge cache ls|verify|gc|clean`: inspect and maintain the step cache.

import { resolve } from 'node:path';
import { formatSize, parseSize } from '../cache/parse-size.js';
import { stringOption, UsageError, type Command } from './command.js';

const ACTIONS = ['ls', 'verify', 'gc', 'clean'] as const;

export const cacheCommand: Command = {
  name: 'cache',
  summary: 'list, verify, garbage-collect or clean the step cache',
  usage: 'quantforge cache ls|verify|gc [--max-size 20G]|clean [--cache-dir DIR] [--json]',
  help: [
    '  ls                 entries by kind with their sizes and the step that made them',
    '  verify             check every entry\'s file digests; damaged entries are reported (exit 1)',
    '  gc                 remove damaged entries and crashed runs\' temp dirs, then least-recently-used',
    '                     entries until the cache fits --max-size (default 20G)',
    '  clean              remove every entry',
    '  --cache-dir DIR    the cache (default $QUANTFORGE_CACHE or .quantforge/cache)',
    '  --json             machine-readable output',
  ].join('\n'),
  options: { 'cache-dir': { type: 'string' }, 'max-size': { type: 'string' }, json: { type: 'boolean', default: false } },
  allowPositionals: 1,
  async run({ values, positionals }, io) {
    const { LocalCache, resolveCacheDir } = await import('../cache/store.js');
    const action = positionals[0] as (typeof ACTIONS)[number] | undefined;
    if (!action || !ACTIONS.includes(action)) throw new UsageError(`expected one of: ${ACTIONS.join(', ')}`);
    const root = resolve(resolveCacheDir(stringOption(values, 'cache-dir')));
    const cache = new LocalCache(root);
    const json = values['json'] === true;
    const onWait = (message: string): void => io.err(message);
    if (action === 'ls') {
      const entries = await cache.list();
      const rows = entries.map((e) => ({ kind: e.kind, key: e.key, step: e.meta.stepId, bytes: Object.values(e.meta.files).reduce((s, f) => s + f.size, 0), created: e.meta.createdAt }));
      if (json) io.out(JSON.stringify({ root, entries: rows }));
      else {
        for (const r of rows) io.out(`${r.kind.padEnd(14)} ${r.key.slice(0, 12)}  ${formatSize(r.bytes).padStart(9)}  ${r.step}`);
        io.out(`${rows.length} entries, ${formatSize(rows.reduce((s, r) => s + r.bytes, 0))} in ${root}`);
      }
      return { code: 0 };
    }
    if (action === 'verify') {
      const bad: { kind: string; key: string; problem: string }[] = [];
      const entries = await cache.list();
      for (const e of entries) {
        const v = await cache.verify(e);
        if (!v.ok) bad.push({ kind: e.kind, key: e.key, problem: v.problem });
      }
      if (json) io.out(JSON.stringify({ root, entries: entries.length, damaged: bad }));
      else {
        for (const b of bad) io.out(`damaged ${b.kind}/${b.key.slice(0, 12)}: ${b.problem}`);
        io.out(`${entries.length} entries verified, ${bad.length} damaged${bad.length ? ' (`quantforge cache gc` removes them; a run rebuilds them)' : ''}`);
      }
      return { code: bad.length ? 1 : 0 };
    }
    if (action === 'gc') {
      const maxBytes = parseSize(stringOption(values, 'max-size') ?? '20G');
      const r = await cache.gc({ maxBytes, onWait });
      if (json) io.out(JSON.stringify({ root, ...r }));
      else io.out(`removed ${r.removed.length} entries (${formatSize(r.freedBytes)}) and ${r.tempDirsRemoved} temp dirs; ${formatSize(r.remainingBytes)} remain`);
      return { code: 0 };
    }
    const r = await cache.clean({ onWait });
    if (json) io.out(JSON.stringify({ root, ...r }));
    else io.out(`removed ${r.entriesRemoved} entries (${formatSize(r.freedBytes)})`);
    return { code: 0 };
  },
};
