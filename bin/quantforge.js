#!/usr/bin/env node
// Entry point of the `quantforge` command: runs the compiled CLI (built by `npm ci` through `prepare`).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const cli = new URL('../dist/src/cli.js', import.meta.url);
if (!existsSync(fileURLToPath(cli))) {
  process.stderr.write('quantforge is not built: run `npm run build` (npm ci does it through `prepare`)\n');
  process.exit(2);
}
await import(cli.href);
