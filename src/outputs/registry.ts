// Output formats by their recipe `format`: one word in the recipe, the schema file name and the folder name.
// A new format is its folder and one line here (and its schema's line in schema/recipe.schema.json).

import type { StepDef } from '../steps/types.js';
import { compressedTensorsOutput } from './compressed-tensors/output.js';
import { onnxOutput } from './onnx/output.js';
import { ggufOutput } from './gguf/output.js';
import type { OutputDef, OutputOptions } from './output-def.js';

export const outputDefs: Readonly<Record<string, OutputDef<OutputOptions>>> = {
  'compressed-tensors': compressedTensorsOutput,
  onnx: onnxOutput,
  gguf: ggufOutput,
};

/** the def of a validated output entry (the schema admits only formats that have one) */
export function outputDef(output: OutputOptions): OutputDef<OutputOptions> {
  const def = outputDefs[output.format];
  if (!def) throw new Error(`plan error: no output format "${output.format}"; expected one of: ${Object.keys(outputDefs).join(', ')}`);
  return def;
}

/** the step kinds the output formats add: the writers and the evaluations */
export const outputSteps: readonly StepDef[] = Object.values(outputDefs).flatMap((d) => [d.write.step, ...(d.evaluate ? [d.evaluate.step] : [])]);
