// Last touches on a stage once merges are done: targets written inside `scheme: {PRESET: targets}` replace
// the modifier's `targets`; a weight observer lands where quantforge reads it; and warnings where
// quantforge's result would differ from llm-compressor's.

import { isMap, isScalar, isSeq, type Node } from 'yaml';
import type { ConvertContext } from './context.js';
import type { StageDraft } from './draft.js';
import { entry, keyName, mapAt, put, scalarAt, seqAt } from './nodes.js';
import { presetGroup } from './quant-args.js';

export function finishStage(ctx: ConvertContext, draft: StageDraft, later: readonly StageDraft[]): void {
  if (draft.schemeTargets) {
    if (draft.params.has('targets')) draft.dropped.push('targets: the targets inside scheme replace them, as in llm-compressor');
    draft.set('targets', draft.schemeTargets.keyRange, draft.schemeTargets.value);
  }
  applyWeightObserver(draft);
  if (draft.quantizes && !draft.params.has('ignore') && mayTargetLmHead(draft)) {
    const { key } = draft.quantFrom;
    ctx.warn(key, `${draft.quantFrom.name} gives no ignore: llm-compressor would quantize lm_head too; quantforge quantizes decoder-layer Linears only and keeps lm_head in full precision (ignore: [lm_head])`);
    draft.set('ignore', key.range, seqAt(key.range, [scalarAt('lm_head', key.range)]));
    draft.notes.push("ignore: [lm_head] added: llm-compressor's default ignore is [], which would quantize lm_head too");
  }
  if (draft.kind === 'awq' && !draft.quantizes) {
    const next = later.find((d) => d.quantizes);
    const scheme = next?.params.get('scheme')?.value;
    if (!(isScalar(scheme) && scheme.value === 'W4A16_ASYM')) {
      const message = `quantforge's awq without a scheme searches scales for W4A16_ASYM, while llm-compressor searches for the scheme of the quantizing modifier after it; to search for that scheme, give ${draft.entry.name} the scheme itself or follow it directly with a QuantizationModifier`;
      ctx.warn(draft.entry.key, message);
      draft.notes.push(`note: ${message}`);
    }
  }
  if (draft.kind === 'autoround') {
    const iters = argValue(draft, 'iters');
    if (iters === 0 && argValue(draft, 'disable_opt_rtn') !== true) {
      const message = "with iters: 0 llm-compressor's AutoRound runs its optimised round-to-nearest; quantforge's is plain round-to-nearest (as with disable_opt_rtn: true)";
      ctx.warn(draft.entry.key, message);
      draft.notes.push(`note: ${message}`);
    }
  }
}

function argValue(draft: StageDraft, name: string): unknown {
  const pair = draft.entry.args ? entry(draft.entry.args, name) : undefined;
  return isScalar(pair?.value) ? pair.value.value : undefined;
}

/**
 * llm-compressor's weight_observer: quantforge's rtn has `observer`; other stages read it from each config
 * group's weights, so a preset scheme is spelled out as config_groups to carry it.
 */
function applyWeightObserver(draft: StageDraft): void {
  const observer = draft.weightObserver;
  if (!observer) return;
  if (draft.kind === 'rtn') {
    draft.set('observer', observer.keyRange, observer.value);
    return;
  }
  const groups = draft.params.get('config_groups')?.value;
  if (isMap(groups)) {
    for (const pair of groups.items) {
      const weights = isMap(pair.value) ? entry(pair.value, 'weights')?.value : undefined;
      if (!isMap(weights)) continue;
      weights.items = weights.items.filter((p) => keyName(p) !== 'observer');
      put(weights, 'observer', observer.keyRange, observer.value.clone() as Node);
    }
    return;
  }
  const scheme = draft.params.get('scheme');
  if (!scheme || !isScalar(scheme.value) || typeof scheme.value.value !== 'string') return;
  const targets = draft.params.get('targets')?.value;
  const list = isSeq(targets) ? targets : seqAt(scheme.keyRange, [scalarAt('Linear', scheme.keyRange)]);
  const spelled = mapAt(scheme.value.range);
  put(spelled, 'group_0', scheme.keyRange, presetGroup(scheme.value.value, list, scheme.value.range, observer.value));
  draft.params.delete('scheme');
  draft.set('config_groups', scheme.keyRange, spelled);
  draft.notes.push(`scheme ${scheme.value.value} written out as config_groups to carry weight observer ${String(isScalar(observer.value) ? observer.value.value : '')}`);
}

/** whether the stage's targets could select lm_head (`Linear`, `lm_head`, or a re: pattern matching it) */
function mayTargetLmHead(draft: StageDraft): boolean {
  const targets: string[] = [];
  const collect = (node: Node | undefined) => {
    if (isSeq(node)) for (const item of node.items) if (isScalar(item) && typeof item.value === 'string') targets.push(item.value);
  };
  const own = draft.params.get('targets')?.value;
  if (own) collect(own);
  else if (draft.params.has('scheme')) targets.push('Linear');
  const groups = draft.params.get('config_groups')?.value;
  if (isMap(groups)) for (const pair of groups.items) if (isMap(pair.value)) collect(entry(pair.value, 'targets')?.value ?? undefined);
  return targets.some((t) => t === 'Linear' || t === 'lm_head' || (t.startsWith('re:') && matchesAtStart(t.slice(3), 'lm_head')));
}

/** Python's re.match: the pattern anchored at the start of the name */
function matchesAtStart(pattern: string, name: string): boolean {
  try {
    return new RegExp(`^(?:${pattern})`).test(name);
  } catch {
    return false;
  }
}
