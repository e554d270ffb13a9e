// e2e tests run the compiled CLI (bin/quantforge.js → dist/): build it once so it matches the sources.

import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';

export default function setup(): void {
  const root = resolve(import.meta.dirname, '..');
  execFileSync(process.execPath, [resolve(root, 'node_modules/typescript/bin/tsc'), '-p', resolve(root, 'tsconfig.build.json')], { stdio: 'inherit' });
}
