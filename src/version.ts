// quantforge's own version, from the package.json above this file (src/ when run from TypeScript, dist/src/
// when compiled). Read through require, whose JSON errors name the file (this leaf sits below diag/).

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);

function findPackageJson(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'package.json');
    if (existsSync(candidate) && (require(candidate) as { name?: string }).name === 'quantforge') return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('quantforge: cannot find its package.json');
    dir = parent;
  }
}

export const PACKAGE_ROOT = dirname(findPackageJson());
export const VERSION = (require(join(PACKAGE_ROOT, 'package.json')) as { version: string }).version;
