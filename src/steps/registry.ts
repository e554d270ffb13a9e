// Step implementations by kind. Importing this module is cheap (no onnxruntime): step modules touch the
// runtime only through the Runtime they are handed.

import type { StepImpl } from './types.js';
import { awqStep } from './awq.js';
import { captureStep } from './capture.js';
import { embedStep } from './embed.js';
import { evaluateStep } from './evaluate.js';
import { exampleModelStep } from './example-model.js';
import { gptqStep } from './gptq.js';
import { autoroundStep } from './autoround.js';
import { propagateStep } from './propagate.js';
import { evaluateOnnxStep } from '../outputs/onnx/evaluate-step.js';
import { exportOnnxStep } from '../outputs/onnx/export-step.js';
import { packStep } from '../outputs/compressed-tensors/pack-step.js';
import { reportStep } from './report.js';
import { rtnStep } from './rtn.js';
import { smoothquantStep } from './smoothquant.js';
import { tokenizeStep } from './tokenize.js';

const impls: StepImpl<never>[] = [
  exampleModelStep,
  tokenizeStep,
  embedStep,
  propagateStep,
  captureStep,
  smoothquantStep,
  awqStep,
  gptqStep,
  autoroundStep,
  rtnStep,
  evaluateStep,
  packStep,
  exportOnnxStep,
  evaluateOnnxStep,
  reportStep,
];

export const stepImpls: ReadonlyMap<string, StepImpl> = new Map(impls.map((s) => [s.kind, s as unknown as StepImpl]));

export const stepVersions: ReadonlyMap<string, number> = new Map(impls.map((s) => [s.kind, s.version]));
