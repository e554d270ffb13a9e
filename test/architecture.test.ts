// The house rules of src/ (docs/architecture.md, STYLE.md §1 and §5): folders form a stack and a file imports
// only from its own folder or from folders below it, no files import each other in a cycle, onnxruntime-node
// is imported only under src/ort/, and no file grows past 600 lines.

import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { checkLayers, LAYERS, layerOf, readTree, specifiersOf } from './import-layers.js';

const tree = readTree(join(import.meta.dirname, '..', 'src'));

describe('the import-direction check', () => {
  test('src/ imports only downward, with no file cycle', () => {
    expect(checkLayers(tree)).toEqual({ upward: [], cycles: [] });
  });

  test('every folder of src/ has a place in the layer stack', () => {
    const folders = new Set([...tree.keys()].map(layerOf));
    expect([...folders].filter((f) => !(LAYERS as readonly string[]).includes(f))).toEqual([]);
  });

  test('reports an import up the stack and a cycle (shown on a small tree)', () => {
    const broken = new Map([
      // model is below graphs: this import goes up
      ['model/source.ts', "import { generate } from '../graphs/generate.js';\n"],
      ['graphs/generate.ts', "import type { WeightSource } from '../model/source.js';\n"],
      // a cycle inside one folder, through a dynamic import
      ['plan/compile.ts', "import { addOutputs } from './outputs.js';\n"],
      ['plan/outputs.ts', "const { cappedSeqLen } = await import('./compile.js');\n"],
      // fine: same folder, and down the stack
      ['plan/builder.ts', "import type { StepPlan } from '../stages/step-plan.js';\nimport './types.js';\n"],
    ]);
    const report = checkLayers(broken);
    expect(report.upward).toEqual(['model/source.ts → graphs/generate.ts: model may not import graphs, which is above it']);
    expect(report.cycles).toEqual([
      ['graphs/generate.ts', 'model/source.ts', 'graphs/generate.ts'],
      ['plan/compile.ts', 'plan/outputs.ts', 'plan/compile.ts'],
    ]);
  });

  test('a folder missing from the stack is reported', () => {
    expect(checkLayers(new Map([['queue/worker.ts', "import { build } from '../exec/run.js';\n"]])).upward).toEqual(['queue/worker.ts: folder "queue" has no layer']);
  });
});

describe('src/ files', () => {
  test('only src/ort/ imports onnxruntime-node', () => {
    const importers = [...tree].filter(([, text]) => specifiersOf(text).includes('onnxruntime-node')).map(([file]) => file);
    expect(importers.length).toBeGreaterThan(0);
    expect(importers.filter((f) => !f.startsWith('ort/'))).toEqual([]);
  });

  test('no file is longer than 600 lines', () => {
    const long = [...tree].map(([file, text]) => [file, text.split('\n').length] as const).filter(([, lines]) => lines > 600);
    expect(long).toEqual([]);
  });
});
