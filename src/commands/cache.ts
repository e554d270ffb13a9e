// `quantforge cache ls|verify|gc|clean`: inspect and maintain the step store (a directory or s3://…).

import { formatSize, parseSize } from '../cache/parse-size.js';
import { UsageError, stringOption, type Command } from './command.js';
import { openChosenStore, storeChoice, storeHelp, storeOptions } from './store-options.js';

const ACTIONS = ['ls', 'verify', 'gc', 'clean'] as const;

export const cacheCommand: Command = {
  name: 'cache',
  summary: 'list, verify, garbage-collect or clean the step store',
  usage: 'quantforge cache ls|verify|gc [--max-size 20G]|clean [--store s3://BUCKET/PREFIX|DIR] [--cache-dir DIR] [--json]',
  help: [
    '  ls                 entries by kind with their sizes and the step that made them',
    '  verify             check every entry\'s file digests (in an S3 store: downloaded and hashed); damaged',
    '                     entries are reported (exit 1)',
    '  gc                 remove damaged entries and crashed runs\' leftovers, then least-recently-used (S3:',
    '                     oldest) entries until the store fits --max-size (default 20G)',
    '  clean              remove every entry',
    storeHelp,
    '  --json             machine-readable output',
  ].join('\n'),
  options: { ...storeOptions, 'max-size': { type: 'string' }, json: { type: 'boolean', default: false } },
  allowPositionals: 1,
  async run({ values, positionals }, io) {
    const action = positionals[0] as (typeof ACTIONS)[number] | undefined;
    if (!action || !ACTIONS.includes(action)) throw new UsageError(`expected one of: ${ACTIONS.join(', ')}`);
    const maxBytes = action === 'gc' ? parseSize(stringOption(values, 'max-size') ?? '20G') : 0;
    const store = await openChosenStore(storeChoice(values), { onWarn: (m) => io.err(`warning: ${m}`) });
    const root = store.location;
    const json = values['json'] === true;
    const onWait = (message: string): void => io.err(message);
    if (action === 'ls') {
      const entries = await store.list();
      const rows = entries.map((e) => ({ kind: e.kind, key: e.key, step: e.meta.stepId, bytes: Object.values(e.meta.files).reduce((s, f) => s + f.size, 0), created: e.meta.createdAt }));
      if (json) io.out(JSON.stringify({ root, entries: rows }));
      else {
        for (const r of rows) io.out(`${r.kind.padEnd(14)} ${r.key.slice(0, 12)}  ${formatSize(r.bytes).padStart(9)}  ${r.step}`);
        io.out(`${rows.length} entries, ${formatSize(rows.reduce((s, r) => s + r.bytes, 0))} in ${root}`);
      }
      return { code: 0 };
    }
    if (action === 'verify') {
      const { entries, damaged } = await store.verifyAll({ onEntry: (done, total) => io.status(`verifying ${done}/${total}`) });
      io.status(undefined);
      if (json) io.out(JSON.stringify({ root, entries, damaged }));
      else {
        for (const b of damaged) io.out(`damaged ${b.kind}/${b.key.slice(0, 12)}: ${b.problem}`);
        io.out(`${entries} entries verified, ${damaged.length} damaged${damaged.length ? ' (`quantforge cache gc` removes them; a run rebuilds them)' : ''}`);
      }
      return { code: damaged.length ? 1 : 0 };
    }
    if (action === 'gc') {
      const r = await store.gc({ maxBytes, onWait });
      if (json) io.out(JSON.stringify({ root, ...r }));
      else {
        io.out(`removed ${r.removed.length} entries (${formatSize(r.freedBytes)}) and ${r.tempDirsRemoved} temp dirs; ${formatSize(r.remainingBytes)} remain in ${root}`);
        const local = (r as { local?: typeof r }).local;
        if (local) io.out(`local copy: removed ${local.removed.length} entries (${formatSize(local.freedBytes)}); ${formatSize(local.remainingBytes)} remain in ${store.root}`);
      }
      return { code: 0 };
    }
    const r = await store.clean({ onWait });
    if (json) io.out(JSON.stringify({ root, ...r }));
    else io.out(`removed ${r.entriesRemoved} entries (${formatSize(r.freedBytes)}) from ${root}`);
    return { code: 0 };
  },
};
