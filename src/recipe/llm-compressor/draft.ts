// One quantforge stage being made from one llm-compressor modifier (or two, merged): its parameters as
// YAML nodes placed at the llm-compressor text, in the order they were written, and what was dropped.

import type { Node, YAMLSeq } from 'yaml';
import type { ModifierSpec } from './modifiers.js';
import type { SourceRange } from './nodes.js';
import type { ModifierEntry } from './read.js';

export interface DraftParam {
  readonly keyRange: SourceRange;
  readonly value: Node;
}

/** the fields that say what a stage quantizes; they move together when two modifiers merge */
export const QUANT_FIELDS = ['scheme', 'config_groups', 'targets', 'ignore'] as const;

export class StageDraft {
  readonly params = new Map<string, DraftParam>();
  /** `name: reason` for each parameter dropped on the way (comments in the imported recipe) */
  readonly dropped: string[] = [];
  /** sentences about the conversion (comments in the imported recipe) */
  readonly notes: string[] = [];
  /** the modifiers this stage comes from, the first giving its kind */
  readonly from: ModifierEntry[];
  /** the modifier whose scheme the stage uses (another one after a merge) */
  quantFrom: ModifierEntry;
  /** targets written inside `scheme: {PRESET: targets}`; they win over `targets` */
  schemeTargets: { keyRange: SourceRange; value: YAMLSeq } | undefined;
  /** llm-compressor's weight_observer / observer.weights, applied once the scheme is final */
  weightObserver: { keyRange: SourceRange; value: Node } | undefined;

  constructor(
    readonly spec: ModifierSpec,
    entry: ModifierEntry,
  ) {
    this.from = [entry];
    this.quantFrom = entry;
  }

  get kind(): string {
    return this.spec.kind;
  }

  get entry(): ModifierEntry {
    return this.from[0]!;
  }

  set(name: string, keyRange: SourceRange, value: Node): void {
    this.params.set(name, { keyRange, value });
  }

  /** has a scheme or config groups of its own */
  get quantizes(): boolean {
    return this.params.has('scheme') || this.params.has('config_groups') || this.schemeTargets !== undefined;
  }

  /** says nothing about what to quantize: llm-compressor then uses what an earlier modifier configured */
  get unconfigured(): boolean {
    return QUANT_FIELDS.every((f) => !this.params.has(f)) && this.schemeTargets === undefined && this.weightObserver === undefined;
  }

  /** takes over `other`'s quantization fields (llm-compressor applies one modifier's scheme to the other's algorithm) */
  absorb(other: StageDraft, note: string): void {
    for (const field of QUANT_FIELDS) {
      const param = other.params.get(field);
      if (param) this.params.set(field, param);
    }
    this.schemeTargets = other.schemeTargets;
    this.from.push(other.entry);
    this.quantFrom = other.entry;
    this.dropped.push(...other.dropped);
    this.notes.push(note);
  }
}
