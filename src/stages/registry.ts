// Stage kinds by their YAML `kind`: one word in the recipe, the schema file name and the module name.

import type { StageConfig, StageKind } from '../recipe/types.js';
import { autoroundStage } from './autoround.js';
import { awqStage } from './awq.js';
import { gptqStage } from './gptq.js';
import { rtnStage } from './rtn.js';
import { smoothquantStage } from './smoothquant.js';
import type { StageDef } from './stage.js';

export const stageDefs: { readonly [K in StageKind]: StageDef<Extract<StageConfig, { kind: K }>> } = {
  gptq: gptqStage,
  awq: awqStage,
  smoothquant: smoothquantStage,
  autoround: autoroundStage,
  rtn: rtnStage,
};

export function stageDef(stage: StageConfig): StageDef<StageConfig> {
  return stageDefs[stage.kind] as StageDef<StageConfig>;
}
