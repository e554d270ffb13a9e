// Every step kind a plan can hold, by kind: the registry's (src/steps/registry.ts) and the output formats'
// writers and evaluations (src/outputs/registry.ts). The compute worker runs them; their versions go into keys.

import { outputSteps } from '../outputs/registry.js';
import { steps } from '../steps/registry.js';
import type { StepImpl } from '../steps/types.js';

export const stepImpls: ReadonlyMap<string, StepImpl> = new Map([...steps, ...outputSteps].map((s) => [s.kind, s]));

export const stepVersions: ReadonlyMap<string, number> = new Map([...stepImpls.values()].map((s) => [s.kind, s.version]));
