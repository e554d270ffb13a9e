// Failures of the job queue as data: Redis that cannot be used, and what a worker refuses or cannot find
// (QueueReason in diag/failure.ts), each with a one-line message naming the queue, the step or the worker.

import { ReasonedError, type QueueReason } from '../../diag/failure.js';

export class QueueError extends ReasonedError<QueueReason> {}
