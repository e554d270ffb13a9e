// What a run reports, as data. The executor only emits these events and reporters only render them
// (wireit's logging/ split): the JSON reporter writes them as they are, so `event` is the discriminator
// and every field is plain JSON.

import type { Json } from '../cache/key.js';
import type { FailureReason } from '../diag/failure.js';
import type { SourcePosition } from '../diag/position.js';

/** how a step's result was obtained: from the cache, or by running it now */
export type StepResult = 'cached' | 'ran';

export interface PlannedStep {
  id: string;
  kind: string;
  /** display group, e.g. "stage 1: gptq"; reporters group steps by it */
  group: string;
  /** `fresh`: its cache entry exists; `run`: it must be computed (`reason` says why, see explainChange) */
  state: 'fresh' | 'run';
  reason?: string;
}

export type RunEvent =
  | { event: 'plan'; steps: PlannedStep[] }
  | { event: 'step-start'; id: string; kind: string; group: string }
  | { event: 'step-progress'; id: string; done: number; total: number; message?: string }
  | { event: 'step-done'; id: string; kind: string; group: string; result: StepResult; ms: number; metrics?: Json }
  | {
      event: 'step-failed';
      id: string;
      kind: string;
      group: string;
      message: string;
      /** where the recipe node the step came from starts; reporters print it as `file:line:col` */
      location?: SourcePosition;
      /** what failed, from one union (diag/failure.ts), e.g. `offsets-out-of-bounds`, `unknown-error-thrown` */
      reason: FailureReason;
    }
  | { event: 'log'; level: 'info' | 'warn'; message: string; id?: string }
  | { event: 'output'; format: string; path: string }
  | {
      event: 'summary';
      ran: number;
      cached: number;
      failed: number;
      /** counts per step kind */
      steps: Record<string, { ran: number; cached: number }>;
      metrics: Json;
      outputs: { format: string; path: string }[];
      ms: number;
    };

/** renders events; `close` resolves once everything is written (the last line included) */
export interface Reporter {
  onEvent(e: RunEvent): void;
  close(): Promise<void>;
}
