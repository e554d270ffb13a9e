// argv → command. The only module that prints diagnostics and calls process.exit.
// Exit codes: 0 success, 1 a step failed, 2 recipe/plan/usage error, a malformed input file (InputError) or a
// device that cannot run here.

import { parseArgs } from 'node:util';
import { UsageError, type Command, type Io } from './commands/command.js';
import { commands } from './commands/index.js';
import { printDiagnostics } from './diag/print.js';
import { InputError, ReasonedError, toFailure } from './diag/failure.js';
import { describeLeaks, LeakWatch, STRICT_WARNINGS_ENV, strictWarnings } from './exec/leak-watch.js';
import { VERSION } from './version.js';


function mainHelp(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    'quantforge — post-training quantization of LLMs as a reproducible, incremental build (onnxruntime)',
    '',
    'usage: quantforge <command> [options]',
    '',
    'commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Run `quantforge <command> --help` for its options. Exit codes: 0 ok, 1 a step failed, 2 bad recipe, usage or input file.',
  ].join('\n');
}

function commandHelp(c: Command): string {
  return [`usage: ${c.usage}`, '', c.summary, '', 'options:', c.help, '  -h, --help         show this help'].join('\n');
}

function makeIo(): Io {
  let statusShown = false;
  const clear = (): void => {
    if (statusShown) process.stderr.write('\r\x1b[K');
    statusShown = false;
  };
  return {
    out: (text) => {
      clear();
      process.stdout.write(`${text}\n`);
    },
    err: (text) => {
      clear();
      process.stderr.write(`${text}\n`);
    },
    status: (text) => {
      if (!process.stderr.isTTY) return;
      if (text === undefined) clear();
      else {
        process.stderr.write(`\r${text.slice(0, (process.stderr.columns ?? 120) - 1)}\x1b[K`);
        statusShown = true;
      }
    },
    // a terminal without a width (some pseudo-terminals) cannot host the live task tree
    isTTY: Boolean(process.stderr.isTTY) && (process.stderr.columns ?? 0) > 0 && !process.env['CI'],
  };
}

async function main(argv: string[]): Promise<number> {
  const io = makeIo();
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.out(mainHelp());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-v') {
    io.out(VERSION);
    return 0;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    io.err(`quantforge: unknown command "${name}"; commands: ${commands.map((c) => c.name).join(', ')}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.out(commandHelp(command));
    return 0;
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: rest, options: command.options, allowPositionals: command.allowPositionals > 0, strict: true });
    if (parsed.positionals.length > command.allowPositionals) throw new UsageError(`unexpected argument "${parsed.positionals[command.allowPositionals]}"`);
  } catch (e) {
    io.err(`quantforge ${name}: ${e instanceof Error ? e.message : String(e)}\nusage: ${command.usage}`);
    return 2;
  }
  try {
    const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
    const result = await command.run({ values, positionals: parsed.positionals }, io);
    if (result.diagnostics && result.diagnostics.length > 0) io.err(printDiagnostics(result.diagnostics, { color: io.isTTY }));
    return result.code;
  } catch (e) {
    // a bad argument, a malformed input file or a device that cannot run here: found before any compute, so
    // one line and exit 2, as for a bad recipe
    if (e instanceof UsageError || e instanceof InputError || (e instanceof ReasonedError && e.reason === 'device-unavailable')) {
      io.err(`quantforge ${name}: ${e.message}`);
      return 2;
    }
    // toFailure: a full disk reads "no space left on <path>" wherever it happened
    io.err(`quantforge ${name}: ${toFailure(e).message}`);
    if (process.env['QUANTFORGE_DEBUG'] && e instanceof Error) io.err(e.stack ?? '');
    return 1;
  }
}

// strict (tests): a command that leaves a file handle to the garbage collector exits 1
const leaks = strictWarnings() ? new LeakWatch() : undefined;

async function checkLeaks(code: number): Promise<number> {
  const left = (await leaks?.collect()) ?? [];
  if (left.length === 0) return code;
  process.stderr.write(`quantforge: ${describeLeaks(left)} (${STRICT_WARNINGS_ENV}=1)\n`);
  return code === 0 ? 1 : code;
}

main(process.argv.slice(2)).then(checkLeaks).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`quantforge: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
