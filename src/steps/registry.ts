// The step kinds stages and the planner add, by their literal kind, and the type map from a kind to its
// params that the plan builder's `add` checks (an output format's steps live in its src/outputs/ folder).
// Importing this module is cheap (no onnxruntime): step modules touch the runtime only through the Runtime
// they are handed.

import type { StepImpl } from './types.js';
import { awqStep } from './awq.js';
import { awqLossStep } from './awq-loss.js';
import { captureStep } from './capture.js';
import { captureShardStep } from './capture-shard.js';
import { embedStep } from './embed.js';
import { evaluateStep } from './evaluate.js';
import { exampleModelStep } from './example-model.js';
import { gptqStep } from './gptq.js';
import { gptqHessianStep } from './gptq-hessian.js';
import { autoroundStep } from './autoround.js';
import { propagateStep } from './propagate.js';
import { reportStep } from './report.js';
import { rtnStep } from './rtn.js';
import { smoothquantStep } from './smoothquant.js';
import { tokenizeStep } from './tokenize.js';

const STEPS = [
  exampleModelStep,
  tokenizeStep,
  embedStep,
  propagateStep,
  captureShardStep,
  captureStep,
  smoothquantStep,
  awqLossStep,
  awqStep,
  gptqHessianStep,
  gptqStep,
  autoroundStep,
  rtnStep,
  evaluateStep,
  reportStep,
] as const;

type Step = (typeof STEPS)[number];

export type StepKind = Step['kind'];

/** the params of step kind `K`, as its StepImpl declares them */
export type StepParams<K extends StepKind> = Extract<Step, { kind: K }> extends StepImpl<K, infer P> ? P : never;

export const steps: readonly StepImpl[] = STEPS;
