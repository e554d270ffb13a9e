// quantforge's own version, from the package.json above this file (src/ when run from TypeScript, dist/src/
// when compiled).

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findPackageJson(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'package.json');
    if (existsSync(candidate) && (JSON.parse(readFileSync(candidate, 'utf8')) as { name?: string }).name === 'quantforge') return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('quantforge: cannot find its package.json');
    dir = parent;
  }
}

export const PACKAGE_ROOT = dirname(findPackageJson());
export const VERSION = (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
