// From plans to jobs: every step gets its key record and key (Merkle: a step's record holds its inputs' keys),
// and steps of several plans (sweep variants) that share a key become one job, so common work runs once.

import { basename, join } from 'node:path';
import { computeKey, type Digest, type Json, type KeyRecord, CACHE_FORMAT } from '../cache/key.js';
import type { Provider } from '../ort/device.js';
import type { Plan, StepNode } from '../plan/types.js';
import type { StepId } from '../stages/step-plan.js';

export interface Job {
  key: Digest;
  record: KeyRecord;
  node: StepNode;
  /** input keys by role, mirroring node.inputs */
  inputs: Record<string, Digest | Digest[]>;
  /** key of the step that produces the model directory, when the model is an artifact */
  modelStep: Digest | undefined;
  /** the first variant (index into the plans) that needs this job */
  variant: number;
}

export interface KeyContext {
  digestFile(path: string): Promise<Digest>;
  /** step kind → implementation version */
  versions: ReadonlyMap<string, number>;
  tools: Record<string, string>;
  /** the resolved execution provider; in the key of steps with `deviceDependent` */
  device: Provider;
}

/** files behind a role: a model directory contributes its config, weights and tokenizer files */
export type FileLister = (role: string, path: string) => Promise<string[]>;

/** the digests of a step's source files by role name (a queue worker recomputes them from its own copies) */
export async function fileDigests(node: Pick<StepNode, 'files' | 'model'>, ctx: Pick<KeyContext, 'digestFile'>, list: FileLister): Promise<Record<string, Digest>> {
  const out: Record<string, Digest> = {};
  for (const [role, path] of Object.entries(node.files)) {
    const files = await list(role, path);
    for (const f of files) out[files.length === 1 && f === path ? role : `${role}/${basename(f)}`] = await ctx.digestFile(f);
  }
  if (node.model?.kind === 'dir') {
    for (const f of await list('model', node.model.dir)) out[`model/${basename(f)}`] = await ctx.digestFile(f);
  }
  return out;
}

/** resolve the jobs of one or more plans, deduplicated by key, in a topological order */
export async function resolveJobs(plans: readonly Plan[], ctx: KeyContext, list: FileLister): Promise<{ jobs: Job[]; keysByVariant: Map<StepId, Digest>[] }> {
  const jobs = new Map<Digest, Job>();
  const keysByVariant: Map<StepId, Digest>[] = [];
  for (const [variant, plan] of plans.entries()) {
    const keys = new Map<StepId, Digest>();
    keysByVariant.push(keys);
    for (const node of plan.steps) {
      const inputs: Record<string, Digest | Digest[]> = {};
      const flat: Record<string, Digest> = {};
      const keyOf = (id: StepId): Digest => {
        const k = keys.get(id);
        if (!k) throw new Error(`plan error: step ${node.id} reads ${id}, which is not planned before it`);
        return k;
      };
      for (const [role, ids] of Object.entries(node.inputs)) {
        if (Array.isArray(ids)) {
          inputs[role] = ids.map(keyOf);
          ids.forEach((id, i) => (flat[`${role}[${i}]`] = keyOf(id)));
        } else {
          inputs[role] = keyOf(ids);
          flat[role] = keyOf(ids);
        }
      }
      const modelStep = node.model?.kind === 'step' ? keyOf(node.model.step) : undefined;
      if (modelStep) flat['model'] = modelStep;
      const version = ctx.versions.get(node.kind);
      if (version === undefined) throw new Error(`no implementation for step kind "${node.kind}" (step ${node.id})`);
      const record: KeyRecord = {
        cacheFormat: CACHE_FORMAT,
        kind: node.kind,
        version,
        params: node.params as Json,
        inputs: flat,
        files: await fileDigests(node, ctx, list),
        tools: ctx.tools,
        ...(node.deviceDependent ? { device: ctx.device } : {}),
      };
      const key = computeKey(record);
      keys.set(node.id, key);
      if (!jobs.has(key)) jobs.set(key, { key, record, node, inputs, modelStep, variant });
    }
  }
  return { jobs: [...jobs.values()], keysByVariant };
}

export function inputKeys(job: Job): Digest[] {
  const out: Digest[] = [];
  for (const v of Object.values(job.inputs)) out.push(...(Array.isArray(v) ? v : [v]));
  if (job.modelStep) out.push(job.modelStep);
  return out;
}

export function historyFile(cacheRoot: string, recipePath: string): string {
  return join(cacheRoot, 'history', `${computeKey({ cacheFormat: 0, kind: 'recipe', version: 0, params: recipePath, inputs: {}, files: {}, tools: {} }).slice(0, 16)}.json`);
}
