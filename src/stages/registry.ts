// Stage kinds by their YAML `kind`: one word in the recipe, the schema file name and the module name. A new
// stage kind is one line here (and its schema's line in schema/recipe.schema.json).

import { autoroundStage } from './autoround.js';
import { awqStage } from './awq.js';
import { gptqStage } from './gptq.js';
import { rtnStage } from './rtn.js';
import { smoothquantStage } from './smoothquant.js';
import type { StageDef } from './stage.js';

/** a stage as the planner hands it to its def: the recipe's object, validated by the kind's schema */
export type StageParams = { readonly kind: string };

export const stageDefs: Readonly<Record<string, StageDef<StageParams>>> = {
  gptq: gptqStage,
  awq: awqStage,
  smoothquant: smoothquantStage,
  autoround: autoroundStage,
  rtn: rtnStage,
};

export const STAGE_KINDS: readonly string[] = Object.keys(stageDefs);

/** the def of a validated stage (the schema admits only kinds that have one) */
export function stageDef(stage: StageParams): StageDef<StageParams> {
  const def = stageDefs[stage.kind];
  if (!def) throw new Error(`plan error: no stage kind "${stage.kind}"; expected one of: ${STAGE_KINDS.join(', ')}`);
  return def;
}
