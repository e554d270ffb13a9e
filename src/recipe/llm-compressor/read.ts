// The modifiers of an llm-compressor recipe in the order llm-compressor runs them (the order of the file),
// each with its YAML nodes. Accepted nesting, as llm-compressor's Recipe parsers (current and 0.4+) read it:
//
//   <name>_stage:                     a stage; `run_type: oneshot` (older releases) is accepted
//     <group>_modifiers:              a group: a map of modifiers, or a list of one-modifier maps
//       GPTQModifier: {...}
//     SmoothQuantModifier: {...}      a modifier directly in a stage
//   <group>_modifiers: {...}          a group outside any stage (the default stage)
//   stages: { <name>_stage: {...} }   the old explicit stages map
//   GPTQModifier: {...}               a bare modifier
//
// `version` and `metadata` are dropped; recipe `args` (variables for eval expressions) are refused.

import { isMap, isScalar, isSeq, type Document, type Node, type Pair, type Scalar, type YAMLMap } from 'yaml';
import { errorAt, type Diagnostic, type SourceFile } from '../../diag/diagnostic.js';
import { isGroupKey, isModifierKey, isStageKey } from './detect.js';
import { deref, keyName, locate } from './nodes.js';

export interface ModifierEntry {
  readonly name: string;
  /** the modifier's key in the file: messages about the whole modifier point here */
  readonly key: Scalar;
  /** its arguments; undefined when it has none (`QuantizationModifier:` or `{}`) */
  readonly args: YAMLMap | undefined;
  /** where it sits, for messages and comments: `quant_stage.quant_modifiers.GPTQModifier` */
  readonly path: string;
  /** the llm-compressor stage (modifiers of one stage share one calibration pass) */
  readonly stage: string;
}

export interface ReadModifiers {
  readonly modifiers: ModifierEntry[];
  readonly errors: Diagnostic[];
}

class Reader {
  readonly modifiers: ModifierEntry[] = [];
  readonly errors: Diagnostic[] = [];
  constructor(
    private readonly doc: Document,
    private readonly file: SourceFile,
  ) {}

  top(root: YAMLMap): void {
    for (const pair of root.items) {
      const key = this.key(pair, 'the top level');
      if (key === undefined) continue;
      const value = deref(this.doc, pair.value);
      if (isStageKey(key)) this.stage(key, value, pair);
      else if (key === 'stages' && isMap(value)) for (const p of value.items) this.stage(keyName(p) ?? '', deref(this.doc, p.value), p);
      else if (isGroupKey(key)) this.group('default', key, value, pair);
      else if (isModifierKey(key)) this.modifier('default', key, pair, value);
      else if (key === 'version' || key === 'metadata') continue;
      else if (key === 'args') {
        const empty = value === undefined || (isScalar(value) && value.value === null) || (isMap(value) && value.items.length === 0);
        if (!empty) this.error(pair.key, 'not supported by quantforge: recipe "args" (variables for eval expressions); write the values into the modifiers');
      } else this.error(pair.key, `"${key}" is not part of an llm-compressor recipe: expected <name>_stage, <group>_modifiers or a modifier name such as GPTQModifier`);
    }
  }

  private stage(path: string, value: Node | undefined, pair: Pair): void {
    if (!isMap(value)) {
      this.error(value ?? pair.key, `stage "${path}" must be a map of <group>_modifiers`);
      return;
    }
    const name = path.endsWith('_stage') ? path.slice(0, -'_stage'.length) : path;
    for (const p of value.items) {
      const key = this.key(p, `stage "${path}"`);
      if (key === undefined) continue;
      const inner = deref(this.doc, p.value);
      if (isGroupKey(key)) this.group(name, `${path}.${key}`, inner, p);
      else if (isModifierKey(key)) this.modifier(name, `${path}.${key}`, p, inner);
      else if (key === 'run_type') {
        if (!isScalar(inner) || inner.value !== 'oneshot') {
          this.error(inner ?? p.key, `not supported by quantforge: run_type ${JSON.stringify(isScalar(inner) ? inner.value : null)} (training); supported: oneshot`);
        }
      } else this.error(p.key, `"${key}" in stage "${path}" is not part of an llm-compressor recipe: expected <group>_modifiers or a modifier name`);
    }
  }

  private group(stage: string, path: string, value: Node | undefined, pair: Pair): void {
    if (isMap(value)) {
      for (const p of value.items) {
        const key = this.key(p, `"${path}"`);
        if (key !== undefined) this.modifier(stage, `${path}.${key}`, p, deref(this.doc, p.value));
      }
    } else if (isSeq(value)) {
      // older serialisations wrote a group as a list of one-modifier maps
      for (const item of value.items) {
        const one = deref(this.doc, item);
        if (!isMap(one) || one.items.length !== 1) {
          this.error(one ?? pair.key, `each item of "${path}" must be a map with one modifier, as in - GPTQModifier: {...}`);
          continue;
        }
        const p = one.items[0]!;
        const key = this.key(p, `"${path}"`);
        if (key !== undefined) this.modifier(stage, `${path}.${key}`, p, deref(this.doc, p.value));
      }
    } else if (!(isScalar(value) && value.value === null)) {
      this.error(value ?? pair.key, `"${path}" must be a map of modifiers (GPTQModifier: {...})`);
    }
  }

  private modifier(stage: string, path: string, pair: Pair, value: Node | undefined): void {
    const name = keyName(pair) ?? '';
    const key = pair.key as Scalar;
    if (value === undefined || (isScalar(value) && value.value === null)) {
      this.modifiers.push({ name, key, args: undefined, path, stage });
    } else if (isMap(value)) {
      this.modifiers.push({ name, key, args: value.items.length > 0 ? value : undefined, path, stage });
    } else {
      this.error(value, `the arguments of ${name} must be a map (parameter: value)`);
    }
  }

  private key(pair: Pair, where: string): string | undefined {
    const key = keyName(pair);
    if (key === undefined) this.error(isScalar(pair.key) ? pair.key : undefined, `a key in ${where} is not a plain name`);
    return key;
  }

  private error(node: Node | unknown, message: string): void {
    this.errors.push(errorAt('llm-compressor-recipe', `${message}.`, locate(this.file, node as Node | undefined)));
  }
}

/** the modifiers of a document that isLlmCompressorRecipe() accepted */
export function readModifiers(doc: Document, file: SourceFile): ReadModifiers {
  const reader = new Reader(doc, file);
  if (isMap(doc.contents)) reader.top(doc.contents);
  return { modifiers: reader.modifiers, errors: reader.errors };
}
