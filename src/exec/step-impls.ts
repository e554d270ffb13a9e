// Every step kind a plan can hold, by kind: the registry's (src/steps/registry.ts) and the output formats'
// writers and evaluations (src/outputs/registry.ts). Their versions go into keys; the compute worker loads
// an implementation when it first runs a step of its kind, so planning and a fully cached run load none.

import { outputSteps } from '../outputs/registry.js';
import { steps } from '../steps/registry.js';
import type { StepDef } from '../steps/types.js';

export const stepDefs: ReadonlyMap<string, StepDef> = new Map([...steps, ...outputSteps].map((s) => [s.kind, s]));

export const stepVersions: ReadonlyMap<string, number> = new Map([...stepDefs.values()].map((s) => [s.kind, s.version]));
