// The recipe's `sweep:` block: override paths mapped to lists of values, parsed into axes whose every
// value remembers where it was written.

import { isMap, isNode, isScalar, isSeq, type Document } from 'yaml';
import { errorAt, type Diagnostic, type SourceFile } from '../diag/diagnostic.js';
import { parseOverridePath } from './override-path.js';
import { toData } from './yaml-source.js';
import type { Assignment, SweepAxis } from './types.js';

/** axes of a schema-valid sweep block; bad keys become diagnostics */
export function parseSweepBlock(doc: Document, file: SourceFile): { axes: SweepAxis[]; errors: Diagnostic[] } {
  const axes: SweepAxis[] = [];
  const errors: Diagnostic[] = [];
  const block = doc.get('sweep', true);
  if (!isMap(block)) return { axes, errors };
  for (const pair of block.items) {
    if (!isScalar(pair.key) || !pair.key.range || !isSeq(pair.value)) continue;
    const key = String(pair.key.value);
    const quoted = pair.key.type === 'QUOTE_DOUBLE' || pair.key.type === 'QUOTE_SINGLE';
    const start = pair.key.range[0] + (quoted ? 1 : 0);
    const location = { file, range: { offset: pair.key.range[0], length: pair.key.range[1] - pair.key.range[0] } };
    const parsed = parseOverridePath(key, file, start);
    if (!parsed.ok) {
      errors.push(...parsed.error);
      continue;
    }
    const { path, segments } = parsed.value;
    if (path[0] === 'sweep') {
      errors.push(errorAt('override-bad-path', `A sweep cannot vary the sweep block itself ("${key}").`, location));
      continue;
    }
    const assignments: Assignment[] = [];
    for (const item of pair.value.items) {
      if (!isNode(item) || !item.range) continue;
      const value = { file, range: { offset: item.range[0], length: item.range[1] - item.range[0] } };
      const data = toData(doc, file, item);
      if (!data.ok) {
        errors.push(...data.error);
        continue;
      }
      assignments.push({ path, value: data.value, site: { segments, value } });
    }
    axes.push({ path, key, values: assignments.map((a) => a.value), assignments, location });
  }
  return { axes, errors };
}
