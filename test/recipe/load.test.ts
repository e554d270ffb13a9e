import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { printDiagnostics } from '../../src/diag/print.js';
import { startOf } from '../../src/diag/position.js';
import { applyAssignments, loadRecipe, loadRecipeSource } from '../../src/recipe/load.js';
import type { LoadedRecipe } from '../../src/recipe/types.js';
import type { RtnStage } from '../../src/stages/rtn.js';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const validDir = join(repo, 'test/fixtures/recipes/valid');

function load(name: string, overrides: string[] = []): LoadedRecipe {
  const result = loadRecipe(join(validDir, `${name}.yaml`), overrides);
  if (!result.ok) throw new Error(printDiagnostics(result.error, { cwd: repo }));
  return result.value;
}

describe('loadRecipe with a valid recipe', () => {
  test('fills every default of a minimal gptq recipe', () => {
    const { recipe } = load('gptq-w4a16');
    expect(recipe.device).toBe('auto');
    expect(recipe.calibration).toEqual({
      dataset: '../data/calib.txt',
      samples: 128,
      seq_len: 2048,
      shuffle: false,
      seed: 0,
      text_field: 'text',
    });
    expect(recipe.stages).toEqual([
      {
        kind: 'gptq',
        scheme: 'W4A16',
        targets: ['Linear'],
        ignore: ['lm_head'],
        block_size: 128,
        dampening_frac: 0.01,
        actorder: 'static',
        offload_hessians: false,
      },
    ]);
    expect(recipe.evaluate).toBeUndefined();
  });

  test('keeps values the recipe gives, including null and 0.0', () => {
    const { recipe } = load('smoothquant-gptq-w8a8');
    const [smooth, gptq] = recipe.stages;
    expect(smooth).toMatchObject({ kind: 'smoothquant', smoothing_strength: 0.8, ignore: [] });
    expect(gptq).toMatchObject({ kind: 'gptq', scheme: 'W8A8', dampening_frac: 0, actorder: null });
    expect(recipe.evaluate).toEqual({
      perplexity: { dataset: '../data/eval.txt', seq_len: 256, max_windows: 10, batch_size: null, text_field: 'text' },
      kl: false,
    });
  });

  test('fills defaults inside config groups and example models', () => {
    const { recipe } = load('awq-example-model');
    expect(recipe.model).toEqual({ example: 'tiny', seed: 3, dtype: 'f32' });
    const [awq, rtn, autoround] = recipe.stages;
    expect(awq).toEqual({ kind: 'awq', duo_scaling: 'both', n_grid: 10, targets: ['Linear'], ignore: ['lm_head'] });
    expect(rtn).toMatchObject({ kind: 'rtn' });
    expect(rtn).not.toHaveProperty('observer');
    expect(rtn?.kind === 'rtn' && (rtn['config_groups'] as RtnStage['config_groups'])?.group_0).toEqual({
      targets: ['Linear'],
      weights: {
        num_bits: 4,
        type: 'int',
        symmetric: false,
        strategy: 'group',
        group_size: 32,
        dynamic: false,
        actorder: null,
        observer: 'minmax',
        observer_kwargs: {},
      },
      input_activations: null,
    });
    expect(autoround).toMatchObject({ iters: 50, lr: 0.005, minmax_lr: null, nsamples: null, batch_size: 8 });
  });

  test('resolves paths against the recipe directory and keeps the raw strings', () => {
    const loaded = load('smoothquant-gptq-w8a8');
    expect(loaded.dir).toBe(validDir);
    expect(loaded.recipe.model).toBe('../models/stories15M');
    expect(loaded.paths.model).toBe(join(repo, 'test/fixtures/recipes/models/stories15M'));
    expect(loaded.paths.calibration).toEqual({ source: 'file', path: join(repo, 'test/fixtures/recipes/data/calib.jsonl') });
    expect(loaded.paths.outputs).toEqual([
      join(repo, 'test/fixtures/recipes/out/stories15M-w8a8'),
      join(repo, 'test/fixtures/recipes/out/stories15M-w8a8-onnx'),
    ]);
    expect(loaded.paths.report).toBe(join(repo, 'test/fixtures/recipes/out/report'));
  });

  test('treats model: datasets as files inside the model directory', () => {
    const loaded = load('awq-example-model');
    expect(loaded.paths.model).toBeUndefined();
    expect(loaded.paths.calibration).toEqual({ source: 'model', file: 'calib.txt' });
  });

  test('parses the sweep block into axes with the location of each value', () => {
    const { sweep } = load('smoothquant-gptq-w8a8');
    expect(sweep.map((a) => [a.path, a.values])).toEqual([
      [['stages', 0, 'smoothing_strength'], [0.5, 0.65, 0.8]],
      [['stages', 1, 'dampening_frac'], [0, 0.01]],
    ]);
    const second = sweep[0]?.assignments[1]?.site.value;
    expect(second && startOf(second)).toEqual({ line: 23, column: 39 });
  });

  test('locate finds the node a path came from, or its nearest ancestor for defaults', () => {
    const loaded = load('gptq-w4a16');
    expect(startOf(loaded.locate(['stages', 0, 'scheme']))).toEqual({ line: 8, column: 13 });
    expect(startOf(loaded.locate(['stages', 0, 'block_size']))).toEqual({ line: 7, column: 5 });
  });

  test('a recipe that is not on disk is a diagnostic, not a throw', () => {
    const result = loadRecipe(join(validDir, 'no-such-recipe.yaml'));
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error[0]?.code).toBe('recipe-unreadable');
  });
});

describe('loadRecipe with --set overrides', () => {
  test('a single value replaces the recipe value and is validated with defaults', () => {
    const loaded = load('smoothquant-gptq-w8a8', ['stages[1].block_size=64', 'evaluate.perplexity.max_windows=null']);
    expect(loaded.recipe.stages[1]).toMatchObject({ block_size: 64 });
    expect(loaded.recipe.evaluate?.perplexity?.max_windows).toBeNull();
    expect(loaded.assignments).toHaveLength(2);
  });

  test('an override creates missing maps on its way', () => {
    const loaded = load('gptq-w4a16', ['evaluate.perplexity.dataset=../data/eval.txt']);
    expect(loaded.recipe.evaluate).toEqual({
      perplexity: { dataset: '../data/eval.txt', seq_len: 2048, max_windows: null, batch_size: null, text_field: 'text' },
      kl: true,
    });
  });

  test('untouched nodes keep their file locations and overridden ones point at the argument', () => {
    const loaded = load('gptq-w4a16', ['stages[0].scheme=W8A8']);
    const scheme = loaded.locate(['stages', 0, 'scheme']);
    expect(scheme.file.path).toBe('--set');
    expect(scheme.file.contents.slice(scheme.range.offset)).toBe('W8A8');
    expect(loaded.locate(['stages', 0, 'kind']).file.path).toBe(join(validDir, 'gptq-w4a16.yaml'));
  });

  test('several values become a sweep axis and a single value pins an axis of the recipe', () => {
    const loaded = load('smoothquant-gptq-w8a8', ['stages[1].block_size=32,64', 'stages[0].smoothing_strength=0.7']);
    expect(loaded.sweep.map((a) => [a.key, a.values])).toEqual([
      ['stages[1].dampening_frac', [0, 0.01]],
      ['stages[1].block_size', [32, 64]],
    ]);
    expect(loaded.recipe.stages[0]).toMatchObject({ smoothing_strength: 0.7 });
  });
});

describe('applyAssignments', () => {
  test('applies one sweep variant and returns a new recipe, leaving the base untouched', () => {
    const base = load('smoothquant-gptq-w8a8');
    const [axis] = base.sweep;
    const assignment = axis?.assignments[0];
    if (!assignment) throw new Error('fixture has no sweep');
    const variant = applyAssignments(base, [assignment]);
    expect(variant.ok && variant.value.recipe.stages[0]).toMatchObject({ smoothing_strength: 0.5 });
    expect(variant.ok && variant.value.sweep).toEqual([]);
    expect(base.recipe.stages[0]).toMatchObject({ smoothing_strength: 0.8 });
    expect(variant.ok && startOf(variant.value.locate(['stages', 1, 'scheme']))).toEqual({ line: 12, column: 13 });
  });

  test('an invalid assignment fails with a diagnostic at the assignment', () => {
    const base = load('gptq-w4a16');
    const site = base.locate(['stages', 0, 'scheme']);
    const result = applyAssignments(base, [{ path: ['stages', 0, 'block_size'], value: 0, site: { segments: [], value: site } }]);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error.map((d) => [d.code, startOf(d.location)])).toEqual([['out-of-range', { line: 8, column: 13 }]]);
  });
});

describe('loadRecipeSource', () => {
  test('reports a YAML warning without failing', () => {
    const result = loadRecipeSource({
      path: join(validDir, 'inline.yaml'),
      contents: 'quantforge: 1\nmodel: !unknown ./m\nstages: [{kind: rtn, scheme: W8A8}]\n',
    });
    expect(result.ok && result.value.warnings.map((w) => w.severity)).toEqual(['warning']);
  });
});
