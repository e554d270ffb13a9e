// Byte sizes as users write them for --max-size and cache budgets: `20G`, `512M`, `1.5T`, `4096`.

import { CacheError } from './cache-error.js';

const UNITS = ['B', 'K', 'M', 'G', 'T', 'P'] as const;

/**
 * Bytes in a size such as `20G`, `512M`, `1.5T`, `100k` or `4096`. Units are powers of 1024 (as in
 * `du -h`, docker and git); a trailing `B` or `iB` is accepted (`20GB`, `20GiB`) and means the same.
 */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([bkmgtp]?)(i?b)?\s*$/i.exec(text);
  const unit = (m?.[2] || 'B').toUpperCase() as (typeof UNITS)[number];
  if (!m || (m[3] && !m[2])) {
    throw new CacheError(
      'cache-invalid-size',
      `invalid size "${text}": expected a number with an optional unit, one of ${UNITS.join(', ')} (e.g. 20G, 512M, 1.5T)`,
    );
  }
  return Math.floor(Number(m[1]) * 1024 ** UNITS.indexOf(unit));
}

/** a size for people: `0 B`, `812 B`, `1.5 KiB`, `20.0 GiB` */
export function formatSize(bytes: number): string {
  let value = bytes;
  let i = 0;
  while (value >= 1024 && i < UNITS.length - 1) {
    value /= 1024;
    i++;
  }
  if (i === 0) return `${bytes} B`;
  return `${value.toFixed(1)} ${UNITS[i]}iB`;
}
