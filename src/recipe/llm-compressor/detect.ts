// Is a recipe file an llm-compressor recipe? Decided by its shape, the way llm-compressor's parser reads
// one: `<name>_stage` maps holding `<group>_modifiers` maps, a `<group>_modifiers` map at the top (older
// releases), an old-style `stages:` map, or modifiers written bare (`GPTQModifier: {...}`). A quantforge
// recipe has `quantforge: 1` and a `stages` *list*, so the two shapes never overlap.

import { isRecord } from '../json-path.js';

export const isStageKey = (key: string): boolean => key.endsWith('_stage');
export const isGroupKey = (key: string): boolean => key === 'modifiers' || key.endsWith('_modifiers');
/** llm-compressor's modifier classes are CamelCase names ending in Modifier */
export const isModifierKey = (key: string): boolean => /^[A-Z][A-Za-z0-9]*Modifier$/.test(key);

/** `data` is the whole recipe as plain data (Document.toJS()) */
export function isLlmCompressorRecipe(data: unknown): boolean {
  if (!isRecord(data) || 'quantforge' in data) return false;
  return Object.entries(data).some(
    ([key, value]) =>
      (isStageKey(key) && isRecord(value)) ||
      (isGroupKey(key) && (isRecord(value) || Array.isArray(value))) ||
      (key === 'stages' && isRecord(value)) ||
      isModifierKey(key),
  );
}
