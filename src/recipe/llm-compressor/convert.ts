// An llm-compressor recipe → quantforge stages, as YAML nodes that keep their llm-compressor source ranges
// (so every later diagnostic points at the llm-compressor file). One modifier becomes one stage of the kind
// in MODIFIERS, with two merges that reproduce how llm-compressor combines modifiers of one stage:
//
// - AWQModifier with no scheme, then QuantizationModifier: llm-compressor's AWQ searches scales for the
//   scheme that QuantizationModifier attaches, then QuantizationModifier rounds. quantforge's awq stage
//   with that scheme does both.
// - QuantizationModifier, then GPTQModifier or AutoRoundModifier with no scheme, targets or ignore (the
//   older form): the algorithm quantizes the modules the QuantizationModifier configured.

import { isMap, isScalar, type Document, type Node, type YAMLMap } from 'yaml';
import type { Diagnostic, SourceFile } from '../../diag/diagnostic.js';
import { suggest } from '../../diag/suggest.js';
import { ConvertContext } from './context.js';
import { StageDraft } from './draft.js';
import { finishStage } from './finish.js';
import { convertMappings } from './mappings.js';
import { acceptedParams, MODIFIER_NAMES, MODIFIERS, paramRule, supportedParams, type ModifierSpec } from './modifiers.js';
import { deref, keyName, mapAt, put, scalarAt, seqAt } from './nodes.js';
import { actorderNode, convertConfigGroups, convertScheme, listOf, QUANT_ARG_KEYS, weightObserverNode } from './quant-args.js';
import { readModifiers, type ModifierEntry } from './read.js';

export interface Converted {
  /** `{quantforge: 1, stages: [...]}`; the caller adds model, calibration and outputs */
  readonly contents: YAMLMap;
  readonly stages: readonly StageDraft[];
  readonly errors: Diagnostic[];
  readonly warnings: Diagnostic[];
}

export function convertLlmCompressor(doc: Document, file: SourceFile): Converted {
  const ctx = new ConvertContext(doc, file);
  const read = readModifiers(doc, file);
  ctx.errors.push(...read.errors);
  const drafts: StageDraft[] = [];
  for (const entry of read.modifiers) {
    const spec = MODIFIERS[entry.name];
    if (spec) drafts.push(draftOf(ctx, spec, entry));
    else ctx.unsupported(entry.key, `modifier "${entry.name}"; supported: ${MODIFIER_NAMES.join(', ')}`);
  }
  if (read.modifiers.length === 0 && read.errors.length === 0) ctx.invalid(doc.contents, 'the recipe has no modifiers');
  const stages = merge(drafts);
  stages.forEach((draft, i) => finishStage(ctx, draft, stages.slice(i + 1)));
  const range = isMap(doc.contents) ? doc.contents.range : undefined;
  const contents = mapAt(range);
  put(contents, 'quantforge', undefined, scalarAt(1, undefined));
  put(contents, 'stages', undefined, seqAt(range, stages.map(stageNode)));
  return { contents, stages, errors: ctx.errors, warnings: ctx.warnings };
}

function draftOf(ctx: ConvertContext, spec: ModifierSpec, entry: ModifierEntry): StageDraft {
  const draft = new StageDraft(spec, entry);
  for (const pair of entry.args?.items ?? []) {
    const name = keyName(pair) ?? '';
    const key = pair.key as Node;
    const value = deref(ctx.doc, pair.value) ?? scalarAt(null, key.range);
    const rule = paramRule(spec, name);
    const raw = isScalar(value) ? value.value : undefined;
    if (rule === undefined) {
      ctx.unsupported(key, `parameter "${name}" of ${entry.name}${hint(spec, name)}; supported: ${supportedParams(spec).join(', ')}`);
    } else if (rule.rule === 'same') {
      draft.set(name, key.range, value.clone() as Node);
    } else if (rule.rule === 'ignore') {
      draft.dropped.push(`${name}: ${rule.reason}`);
    } else if (rule.rule === 'noop') {
      const accepted = rule.values.map((v) => JSON.stringify(v)).join(', ');
      if (!isScalar(value)) ctx.unsupported(key, `${name} (${rule.reason}); accepted only as ${accepted}`);
      else if (!rule.values.includes(raw)) ctx.unsupported(value, `${name}: ${JSON.stringify(raw)} (${rule.reason}); accepted: ${accepted}`);
      else if (raw !== null) draft.dropped.push(`${name}: ${JSON.stringify(raw)} changes nothing (${rule.reason})`);
    } else if (rule.rule === 'refuse') {
      ctx.unsupported(key, `parameter "${name}" of ${entry.name} (${rule.reason})`);
    } else {
      convertParam(ctx, draft, name, key, value);
    }
  }
  return draft;
}

/** ` (did you mean "x"?)`, and where a quantization argument written at modifier level belongs */
function hint(spec: ModifierSpec, name: string): string {
  const belongs = 'a quantization argument, which belongs in config_groups.<group>.weights';
  if (spec.quantizing && QUANT_ARG_KEYS.includes(name)) return ` (${belongs})`;
  const guess = suggest(name, acceptedParams(spec));
  if (guess !== undefined) return ` (did you mean "${guess}"?)`;
  const arg = spec.quantizing ? suggest(name, QUANT_ARG_KEYS) : undefined;
  return arg === undefined ? '' : ` (did you mean "${arg}", ${belongs}?)`;
}

function convertParam(ctx: ConvertContext, draft: StageDraft, name: string, key: Node, value: Node): void {
  const isNull = isScalar(value) && value.value === null;
  switch (name) {
    case 'scheme': {
      if (isNull) return;
      const form = convertScheme(ctx, value);
      if (form?.scheme) draft.set('scheme', key.range, form.scheme);
      if (form?.config_groups) draft.set('config_groups', key.range, form.config_groups);
      if (form?.targets) draft.schemeTargets = { keyRange: key.range, value: form.targets };
      return;
    }
    case 'targets':
    case 'ignore': {
      const list = listOf(ctx, value, name);
      if (list) draft.set(name, key.range, list);
      return;
    }
    case 'config_groups': {
      const groups = isNull ? undefined : convertConfigGroups(ctx, value);
      if (groups) draft.set(name, key.range, groups);
      return;
    }
    case 'actorder':
      draft.set(name, key.range, actorderNode(value));
      return;
    case 'mappings': {
      const mappings = convertMappings(ctx, value, draft.entry.name === 'AWQModifier' ? 'AWQModifier' : 'SmoothQuantModifier');
      if (mappings) draft.set(name, key.range, mappings);
      return;
    }
    case 'weight_observer':
      if (!isNull) draft.weightObserver = { keyRange: key.range, value: weightObserverNode(value) };
      return;
    case 'observer':
      observerMap(ctx, draft, value);
      return;
  }
}

/** `observer: {weights: mse}`: the weight observer; activation observers are not supported */
function observerMap(ctx: ConvertContext, draft: StageDraft, value: Node): void {
  if (isScalar(value) && value.value === null) return;
  if (!isMap(value)) {
    ctx.invalid(value, 'observer must be a map such as {weights: mse}');
    return;
  }
  for (const pair of value.items) {
    const name = keyName(pair) ?? '';
    const observer = deref(ctx.doc, pair.value);
    if (isScalar(observer) && observer.value === null) continue;
    if (name === 'weights' && observer) draft.weightObserver = { keyRange: (pair.key as Node).range, value: weightObserverNode(observer) };
    else if (name === 'input' || name === 'output') ctx.unsupported(pair.key as Node, `observer.${name} (observers for activation quantization); supported: observer.weights`);
    else ctx.invalid(pair.key as Node, `"${name}" is not an observer key: expected weights, input or output`);
  }
}

/** the two merges described at the top, within one llm-compressor stage */
function merge(drafts: StageDraft[]): StageDraft[] {
  const out: StageDraft[] = [];
  for (const draft of drafts) {
    const previous = out[out.length - 1];
    const sameStage = (d: StageDraft | undefined) => d !== undefined && d.entry.stage === draft.entry.stage;
    if (draft.kind === 'rtn' && sameStage(previous) && previous!.kind === 'awq' && previous!.unconfigured && draft.weightObserver === undefined && previous!.from.length === 1) {
      previous!.absorb(
        draft,
        `${previous!.entry.name} and the ${draft.entry.name} after it make one awq stage: llm-compressor's AWQ searches scales for the scheme ${draft.entry.name} applies, as quantforge's awq does with its own scheme`,
      );
      continue;
    }
    const configurer = [...out].reverse().find((d) => sameStage(d) && d.kind === 'rtn' && d.quantizes && d.weightObserver === undefined);
    if ((draft.kind === 'gptq' || draft.kind === 'autoround') && draft.unconfigured && configurer) {
      draft.absorb(configurer, `${draft.entry.name} has no scheme of its own: it quantizes what the ${configurer.entry.name} before it configured, so that modifier's scheme moves here`);
      out.splice(out.indexOf(configurer), 1);
    }
    out.push(draft);
  }
  return out;
}

function stageNode(draft: StageDraft): YAMLMap {
  const { key } = draft.entry;
  const map = mapAt(key.range);
  put(map, 'kind', key.range, scalarAt(draft.kind, key.range));
  for (const [name, param] of draft.params) put(map, name, param.keyRange, param.value);
  return map;
}
