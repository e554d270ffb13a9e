// `quantforge worker`: take step jobs from the job queue (Redis, BullMQ) and run them into the shared store,
// with the same step code and compute runner as `quantforge run`. A queue or store that cannot be used is bad
// input (one line, exit 2) before any job is taken. SIGTERM or Ctrl-C stops taking jobs and lets the ones in
// progress finish; a second one stops at once (their jobs go back to the queue when their locks expire).

import type { Device } from '../recipe/types.js';
import { DEVICES, resolveDevice } from '../ort/device.js';
import { intOption, stringOption, UsageError, type Command, type CommandResult, type Io } from './command.js';
import { checkQueue, workerChoice, workerHelp, workerOptions } from './queue-options.js';
import { storeChoice, storeHelp, storeOptions } from './store-options.js';

async function runWorker(values: Record<string, unknown>, io: Io): Promise<CommandResult> {
  const { openChosenStore } = await import('./store-options.js');
  const { StepWorker } = await import('../exec/queue/step-worker.js');
  const { createReporter } = await import('../exec/reporters/index.js');
  const queue = workerChoice(values);
  const store = storeChoice(values);
  const requested = (stringOption(values, 'device') ?? 'auto') as Device;
  if (!DEVICES.includes(requested)) throw new UsageError(`--device "${requested}" is not one of: ${DEVICES.join(', ')}`);
  const device = resolveDevice(requested);
  const threads = intOption(values, 'threads');
  const json = values['json'] === true;
  const reporter = await createReporter({ json, tty: false, stream: json ? process.stdout : process.stderr });
  const opened = await openChosenStore(store, { onWarn: (message) => reporter.onEvent({ event: 'log', level: 'warn', message }) });
  await checkQueue(queue.target);
  const worker = new StepWorker({ target: queue.target, settings: queue.settings, store: opened, device: device.device, threads, emit: (e) => reporter.onEvent(e) });
  await worker.start();
  const { concurrency } = queue.settings;
  reporter.onEvent({
    event: 'log',
    level: 'info',
    message: `worker ${worker.name} takes steps from ${queue.target.url} into ${opened.location} (${device.device}, ${concurrency} at once)${device.notice ? `; ${device.notice}` : ''}`,
  });
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (): void => {
      if (stopping) {
        void worker.close(true).then(resolve);
        return;
      }
      stopping = true;
      reporter.onEvent({ event: 'log', level: 'info', message: `worker ${worker.name}: stopping after the steps in progress (again to stop now)` });
      void worker.close().then(resolve);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await reporter.close();
  return { code: 0 };
}

export const workerCommand: Command = {
  name: 'worker',
  summary: 'take step jobs from a job queue (Redis) and run them into the shared store',
  usage: 'quantforge worker --queue redis://HOST:PORT [--store s3://BUCKET/PREFIX|DIR] [--concurrency N] [--device D] [--threads N] [--json]',
  help: [
    workerHelp,
    storeHelp,
    '  --device D         auto | cpu | webgpu | cuda (default auto); in the key of provider-dependent steps,',
    '                     so it must match what the coordinator planned with',
    '  --threads N        onnxruntime intra-op threads of each step (default: all cores)',
    '  --json             JSON lines on stdout: the events of the steps this worker runs',
    '  Runs until SIGTERM or Ctrl-C (the steps in progress finish first; a second signal stops at once).',
  ].join('\n'),
  options: { ...workerOptions, ...storeOptions, device: { type: 'string' }, threads: { type: 'string' }, json: { type: 'boolean', default: false } },
  allowPositionals: 0,
  run: ({ values }, io) => runWorker(values, io),
};
