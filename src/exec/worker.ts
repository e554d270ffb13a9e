// The compute worker thread: owns the onnxruntime Runtime (sessions stay memoised across steps) and runs one
// step at a time on request from WorkerRunner.

import { parentPort, workerData } from 'node:worker_threads';
import { ReasonedError, toFailure } from '../diag/failure.js';
import { Runtime } from '../ort/session.js';
import { stepDefs } from './step-impls.js';
import { describeLeaks, LeakWatch, strictWarnings } from './leak-watch.js';
import { runtimeFor, stepImpl, type StepRequest, type WorkerConfig, type WorkerMessage } from './runner.js';

const config = workerData as WorkerConfig;
// strict (tests): a step that leaves a file handle to the garbage collector fails
const leaks = strictWarnings() ? new LeakWatch() : undefined;
const threads = config.threads ? { threads: config.threads } : {};
const runtime = new Runtime({ device: config.device, ...threads });
let cpu: Runtime | undefined;
const port = parentPort!;
const post = (m: WorkerMessage): void => port.postMessage(m);

// the running step's abort: WorkerRunner posts `abort` on Ctrl-C and the step stops at its next check.
// Terminating the thread instead would tear down onnxruntime under a running session (the process aborts).
let current: AbortController | undefined;

port.on('message', (req: StepRequest | { type: 'abort' }) => {
  if ('type' in req) {
    current?.abort();
    return;
  }
  const controller = new AbortController();
  current = controller;
  void (async () => {
    try {
      const impl = await stepImpl(stepDefs, req.kind);
      const result = await impl.run({
        ...req,
        runtime: runtimeFor(req, runtime, () => (cpu ??= new Runtime({ device: 'cpu', ...threads }))),
        progress: (done, total, message) => post(message === undefined ? { type: 'progress', done, total } : { type: 'progress', done, total, message }),
        warn: (message) => post({ type: 'warn', message }),
        signal: controller.signal,
      });
      const left = (await leaks?.collect()) ?? [];
      if (left.length > 0) throw new ReasonedError('file-handle-leak', `step ${req.id}: ${describeLeaks(left)}`);
      post({ type: 'done', result });
    } catch (e) {
      post({ type: 'error', failure: toFailure(e) });
    } finally {
      if (current === controller) current = undefined;
    }
  })();
});
