// The CLI as a user runs it, for the conformance and command tests: `node bin/quantforge.js …` in a child
// process (test/global-setup.ts builds dist/ first), with its exit code and both streams.

import { execFile } from 'node:child_process';
import { resolve } from 'node:path';

export const REPO = resolve(import.meta.dirname, '../..');
export const CLI = resolve(REPO, 'bin/quantforge.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function cli(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return new Promise((done) => {
    execFile(process.execPath, [CLI, ...args], { cwd, env: { ...process.env, CI: '1', ...env }, maxBuffer: 1 << 26 }, (err, stdout, stderr) =>
      done({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** a command that must succeed: its stdout, or an error with its stderr */
export async function cliOk(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<string> {
  const r = await cli(args, cwd, env);
  if (r.code !== 0) throw new Error(`quantforge ${args.join(' ')} exited ${r.code}:\n${r.stderr}`);
  return r.stdout;
}
