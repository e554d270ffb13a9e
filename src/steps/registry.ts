// The step kinds stages and the planner add, by their literal kind, with the version that goes into their
// keys, and the type map from a kind to its params that the plan builder's `add` checks (an output format's
// steps live in its src/outputs/ folder). Importing this module loads no implementation: each line imports
// its step's module on first run, so a run whose steps are all cached never loads graphs, formats or algo.
// A change to a step's code that alters its results bumps its version here.

import { stepDef, type StepDef } from './types.js';

const STEPS = [
  stepDef('example-model', 1, async () => (await import('./example-model.js')).exampleModelStep),
  stepDef('tokenize', 2, async () => (await import('./tokenize.js')).tokenizeStep),
  stepDef('embed', 1, async () => (await import('./embed.js')).embedStep),
  // 3: the basic-op layer (activations.ts)
  stepDef('propagate', 3, async () => (await import('./propagate.js')).propagateStep),
  // 2: shard boundaries on batch boundaries; 3: the basic-op layer (activations.ts)
  stepDef('capture-shard', 3, async () => (await import('./capture-shard.js')).captureShardStep),
  // 2: next_hidden, or mean |X| summed in float64 inside onnxruntime; 3: both; 4: the basic-op layer (activations.ts)
  stepDef('capture', 4, async () => (await import('./capture.js')).captureStep),
  stepDef('smoothquant', 2, async () => (await import('./smoothquant.js')).smoothquantStep),
  stepDef('awq-loss', 1, async () => (await import('./awq-loss.js')).awqLossStep),
  // 3 and 2 changed its results on two lines of work; 4 has both; 5 on two lines again (attention losses in
  // chunks inside the layer's batches with the per-mapping mode; the basic-op layer on every provider): 6 has both
  stepDef('awq', 6, async () => (await import('./awq.js')).awqStep),
  // 2: float32 XᵀX per batch; 3: shard boundaries on batch boundaries; 4: the basic-op layer (activations.ts)
  stepDef('gptq-hessian', 4, async () => (await import('./gptq-hessian.js')).gptqHessianStep),
  // 2: float32 XᵀX taps, or scales rounded to the stored dtype; 3: both; 4: the basic-op layer (activations.ts);
  // 5: output_error from the solve (gptqOutputError: the same codes, the metric within ~1e-7 relative)
  stepDef('gptq', 5, async () => (await import('./gptq.js')).gptqStep),
  // 3: the basic-op layer in its captures and propagation (activations.ts); 4: output errors as quadratic forms
  // over each site's XᵀX (autoround-errors.ts: equal to float32 rounding; codes unchanged)
  stepDef('autoround', 4, async () => (await import('./autoround.js')).autoroundStep),
  // 3: static input ranges and the next layer's inputs from the basic-op layer (activations.ts)
  stepDef('rtn', 3, async () => (await import('./rtn.js')).rtnStep),
  stepDef('evaluate', 3, async () => (await import('./evaluate.js')).evaluateStep),
  stepDef('report', 1, async () => (await import('./report.js')).reportStep),
] as const;

type Step = (typeof STEPS)[number];

export type StepKind = Step['kind'];

/** the params of step kind `K`, as its StepImpl declares them */
export type StepParams<K extends StepKind> = Extract<Step, { kind: K }> extends StepDef<K, infer P> ? P : never;

export const steps: readonly StepDef[] = STEPS;
