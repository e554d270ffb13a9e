// Importing llm-compressor recipes: every fixture (written the way llm-compressor's examples and e2e recipe
// folders write them) imports to a quantforge recipe that loads with its placeholders reported, and, on a
// real model, validates and plans; what quantforge cannot do is a diagnostic at the llm-compressor line.

import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { printDiagnostics } from '../../src/diag/print.js';
import type { Diagnostic } from '../../src/diag/diagnostic.js';
import { compilePlan } from '../../src/plan/compile.js';
import { isLlmCompressorRecipe } from '../../src/recipe/llm-compressor/detect.js';
import { importLlmCompressor } from '../../src/recipe/llm-compressor/import.js';
import { loadRecipe } from '../../src/recipe/load.js';
import { describeShared, REPO, sharedData, sharedModel } from '../e2e/shared.js';

const fixtures = join(REPO, 'test/fixtures/recipes/llm-compressor');
const fixture = (name: string) => join(fixtures, `${name}.yaml`);
const invalid = (name: string) => join(fixtures, 'invalid', `${name}.yaml`);
const names = readdirSync(fixtures).filter((f) => f.endsWith('.yaml')).map((f) => f.replace(/\.yaml$/, ''));
const tmp = mkdtempSync(join(tmpdir(), 'qf-llmc-'));
/** what the loader needs to convert in memory; load never opens them */
const inputs = { model: 'models/m', dataset: 'data/calib.txt' };

const printed = (diagnostics: readonly Diagnostic[]) => `\n${printDiagnostics(diagnostics, { cwd: REPO })}`;

function imported(name: string, options: { model?: string; dataset?: string } = {}): string {
  const out = join(tmp, `${name}.yaml`);
  const result = importLlmCompressor(fixture(name), options, out);
  if (!result.ok) throw new Error(printed(result.error));
  expect(result.value.warnings).toEqual([]);
  writeFileSync(out, result.value.text);
  return out;
}

function loadErrors(path: string, overrides: string[] = [], with_: typeof inputs | object = inputs): string {
  const loaded = loadRecipe(path, overrides, with_);
  if (loaded.ok) throw new Error(`${path} loaded without errors`);
  return printed(loaded.error);
}

describe('importing llm-compressor recipes', () => {
  test('the fixtures cover the shapes llm-compressor writes', () => {
    expect(names).toEqual(['autoround', 'awq-duo-scaling', 'bare-modifiers', 'float-presets', 'gptq-w4a16', 'legacy-shapes', 'non-uniform', 'smoothquant-gptq-w8a8', 'w8a8-smoothquant-rtn']);
  });

  for (const name of names) {
    test(`${name}: the imported recipe loads, and validate reports its two placeholders`, () => {
      const loaded = loadRecipe(imported(name));
      expect(loaded.ok).toBe(false);
      if (loaded.ok) return;
      expect(loaded.error.map((d) => [d.code, d.message.split(' is still')[0]])).toEqual([
        ['placeholder', '"model"'],
        ['placeholder', '"dataset" in "calibration"'],
      ]);
      for (const d of loaded.error) expect(d.message).toContain('replace this placeholder');
    });
  }

  test('stages keep kind, the parameter names and their values; list mappings become objects', () => {
    const result = importLlmCompressor(fixture('smoothquant-gptq-w8a8'), {}, join(fixtures, 'imported.yaml'));
    expect(result.ok && result.value.text).toMatchInlineSnapshot(`
      "# quantforge recipe imported from the llm-compressor recipe smoothquant-gptq-w8a8.yaml by \`quantforge import llm-compressor\`.
      # Paths are relative to this file. Calibration uses quantforge's defaults (calibration.samples 128, seq_len 2048
      # capped by the model's context); llm-compressor's num_calibration_samples / max_seq_length are these two.
      # Replace the <REPLACE: ...> placeholders before running: \`quantforge validate\` lists them.

      quantforge: 1
      model: "<REPLACE: path to the Hugging Face model directory>" # placeholder: write the path, or import again with --model DIR
      calibration:
        dataset: "<REPLACE: path to a calibration text or JSONL file>" # placeholder: write the path, or import again with --dataset FILE
      stages:
        # from smoothing_stage.smoothing_modifiers.SmoothQuantModifier (line 4)
        - kind: smoothquant
          smoothing_strength: 0.8
          mappings:
            - smooth_layer: re:.*input_layernorm
              balance_layers: [re:.*q_proj, re:.*k_proj, re:.*v_proj]
            - smooth_layer: re:.*post_attention_layernorm
              balance_layers: [re:.*gate_proj, re:.*up_proj]
        # from quantization_stage.quantization_modifiers.GPTQModifier (line 11)
        - kind: gptq
          targets: [Linear]
          ignore: [lm_head]
          scheme: W8A8
          dampening_frac: 0
          actorder: null
      outputs:
        - {format: compressed-tensors, path: ./out/smoothquant-gptq-w8a8}
      "
    `);
  });

  test('config_groups per target regex are completed as compressed-tensors completes them', () => {
    const result = importLlmCompressor(fixture('non-uniform'), {}, join(fixtures, 'imported.yaml'));
    expect(result.ok && result.value.text.split('stages:\n')[1]).toMatchInlineSnapshot(`
      "  # from quant_stage.quant_modifiers.GPTQModifier (line 4)
        - kind: gptq
          ignore: [lm_head]
          actorder: null
          config_groups:
            attention:
              targets: [re:.*self_attn\\.(q|k|v|o)_proj$]
              weights: {num_bits: 8, type: int, symmetric: true, actorder: null, strategy: channel}
            mlp:
              targets: [re:.*mlp\\.(gate|up|down)_proj$]
              weights: {num_bits: 4, type: int, symmetric: false, strategy: group, group_size: 128, dynamic: false}
      outputs:
        - {format: compressed-tensors, path: ./out/non-uniform}
      "
    `);
  });

  test('float presets per target set are spelled out as compressed-tensors defines them (FP8_BLOCK, NVFP4A16)', () => {
    const result = importLlmCompressor(fixture('float-presets'), {}, join(fixtures, 'imported.yaml'));
    expect(result.ok && result.value.text.split('stages:\n')[1]).toMatchInlineSnapshot(`
      "  # from quant_stage.quant_modifiers.QuantizationModifier (line 4)
        - kind: rtn
          ignore: [lm_head]
          config_groups:
            group_0:
              targets: [re:.*self_attn.*]
              weights: {num_bits: 8, type: float, symmetric: true, strategy: block, block_structure: [128, 128]}
              input_activations: {num_bits: 8, type: float, symmetric: true, strategy: group, group_size: 128, dynamic: true}
            group_1:
              targets: [re:.*mlp.*]
              weights: {num_bits: 4, type: float, symmetric: true, strategy: tensor_group, group_size: 16}
      outputs:
        - {format: compressed-tensors, path: ./out/float-presets}
      "
    `);
  });

  test('--model and --dataset are written relative to the imported recipe', () => {
    const out = join(REPO, 'test/fixtures/recipes/llm-compressor/imported.yaml');
    const result = importLlmCompressor(fixture('gptq-w4a16'), { model: join(REPO, '../shared/models/m'), dataset: join(REPO, 'test/fixtures/calib.txt') }, out);
    const head = result.ok ? result.value.text.split('stages:')[0]!.split('\n').filter((l) => !l.startsWith('#')) : [];
    expect(head).toEqual(['', 'quantforge: 1', 'model: ../../../../../shared/models/m', 'calibration:', '  dataset: ../../calib.txt', '']);
  });

  test('AWQModifier followed by the QuantizationModifier it searches for becomes one awq stage', () => {
    const loaded = loadRecipe(fixture('awq-duo-scaling'), [], inputs);
    if (!loaded.ok) throw new Error(printed(loaded.error));
    expect(loaded.value.recipe.stages.map((s) => s.kind)).toEqual(['awq']);
    expect(loaded.value.recipe.stages[0]).toMatchObject({ duo_scaling: 'both', n_grid: 10, ignore: ['lm_head'] });
    expect(loaded.value.importNote).toContain('AWQModifier + QuantizationModifier → awq');
  });

  test('an llm-compressor recipe without --model and --dataset says what to give', () => {
    expect(loadErrors(fixture('gptq-w4a16'), [], {})).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/llm-compressor/gptq-w4a16.yaml:2:1 gptq-w4a16.yaml is an llm-compressor recipe: give --model DIR and --dataset FILE to build it as it is, or convert it once with \`quantforge import llm-compressor gptq-w4a16.yaml -o recipe.yaml\`.
          quant_stage:
          ~~~~~~~~~~~
      "
    `);
  });

  test('--model with a quantforge recipe points at the argument', () => {
    expect(loadErrors(join(REPO, 'test/fixtures/recipes/valid/gptq-w4a16.yaml'), [], { model: '../models/x' })).toMatchInlineSnapshot(`
      "
      ❌ --model:1:1 --model applies to llm-compressor recipes, and gptq-w4a16.yaml is a quantforge recipe: set model in it, or with --set model=...
          ../models/x
          ~~~~~~~~~~~
      "
    `);
  });

  test('--set changes the converted stages by their quantforge path', () => {
    const loaded = loadRecipe(fixture('smoothquant-gptq-w8a8'), ['stages[1].dampening_frac=0.05', 'calibration.samples=16'], inputs);
    if (!loaded.ok) throw new Error(printed(loaded.error));
    expect(loaded.value.recipe.stages[1]).toMatchObject({ kind: 'gptq', dampening_frac: 0.05 });
    expect(loaded.value.recipe.calibration).toMatchObject({ samples: 16 });
  });

  test('shape detection: stages, groups, bare modifiers; never a quantforge recipe', () => {
    expect(isLlmCompressorRecipe({ quant_stage: { quant_modifiers: { GPTQModifier: {} } } })).toBe(true);
    expect(isLlmCompressorRecipe({ quant_modifiers: { GPTQModifier: {} } })).toBe(true);
    expect(isLlmCompressorRecipe({ SmoothQuantModifier: { smoothing_strength: 0.5 } })).toBe(true);
    expect(isLlmCompressorRecipe({ quantforge: 1, stages: [{ kind: 'gptq' }] })).toBe(false);
    expect(isLlmCompressorRecipe({ model: 'x', stages: [] })).toBe(false);
  });
});

describe('what quantforge cannot do is an error at the llm-compressor line', () => {
  test('an unsupported modifier', () => {
    expect(loadErrors(invalid('unsupported-modifier'))).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/llm-compressor/invalid/unsupported-modifier.yaml:3:5 not supported by quantforge: modifier "SparseGPTModifier"; supported: QuantizationModifier, GPTQModifier, AWQModifier, SmoothQuantModifier, AutoRoundModifier.
              SparseGPTModifier:
              ~~~~~~~~~~~~~~~~~
      "
    `);
  });

  test('unsupported parameters and values: an unknown preset, a modifier-level group_size, KV-cache quantization, a scale dtype', () => {
    expect(loadErrors(invalid('unsupported-parameters'))).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/llm-compressor/invalid/unsupported-parameters.yaml:4:15 not supported by quantforge: scheme "UNQUANTIZED"; supported: W4A16, W4A16_ASYM, W8A16, W8A8, W4A8, FP8, FP8_DYNAMIC, FP8_BLOCK, NVFP4A16, NVFP4, MXFP4A16, MXFP4, GGUF_Q8_0, GGUF_Q4_0, GGUF_Q4_1, GGUF_Q5_0, GGUF_Q4_K, GGUF_Q6_K (INT8 = W8A8).
                scheme: UNQUANTIZED
                        ~~~~~~~~~~~
      ❌ test/fixtures/recipes/llm-compressor/invalid/unsupported-parameters.yaml:6:7 not supported by quantforge: parameter "group_size" of GPTQModifier (a quantization argument, which belongs in config_groups.<group>.weights); supported: scheme, targets, ignore, config_groups, weight_observer, observer, block_size, dampening_frac, actorder, offload_hessians.
                group_size: 128
                ~~~~~~~~~~
      ❌ test/fixtures/recipes/llm-compressor/invalid/unsupported-parameters.yaml:7:7 not supported by quantforge: kv_cache_scheme (KV-cache quantization); accepted only as null.
                kv_cache_scheme: {num_bits: 8, type: float, symmetric: true, strategy: tensor}
                ~~~~~~~~~~~~~~~
      ❌ test/fixtures/recipes/llm-compressor/invalid/unsupported-parameters.yaml:13:66 not supported by quantforge: scale_dtype in config_groups.group_0.weights (quantforge stores each format's scales in its own dtype); supported: null.
                    weights: {num_bits: 8, type: float, strategy: channel, scale_dtype: torch.float16}
                                                                           ~~~~~~~~~~~
      "
    `);
  });

  test('values the schema rejects point at the llm-compressor text', () => {
    expect(loadErrors(invalid('schema-error'))).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/llm-compressor/invalid/schema-error.yaml:4:27 Value 1.5 for "smoothing_strength" in stage "smoothquant" is out of range: expected a number >= 0 and <= 1.
                smoothing_strength: 1.5
                                    ~~~
      ❌ test/fixtures/recipes/llm-compressor/invalid/schema-error.yaml:7:19 Value 0 for "block_size" in stage "gptq" is out of range: expected an integer >= 1.
                block_size: 0
                            ~
      ❌ test/fixtures/recipes/llm-compressor/invalid/schema-error.yaml:11:31 Invalid value 3 for "num_bits" in "config_groups.group_0.weights" of stage "gptq". Allowed values: 4, 8.
                    weights: {num_bits: 3, strategy: group, group_size: 128}
                                        ~
      "
    `);
  });

  test('mappings in the other modifier\'s form and unknown stage keys', () => {
    expect(loadErrors(invalid('bad-shape'))).toMatchInlineSnapshot(`
      "
      ⚠️ test/fixtures/recipes/llm-compressor/invalid/bad-shape.yaml:7:5 quantforge's awq without a scheme searches scales for W4A16_ASYM, while llm-compressor searches for the scheme of the quantizing modifier after it; to search for that scheme, give AWQModifier the scheme itself or follow it directly with a QuantizationModifier.
              AWQModifier:
              ~~~~~~~~~~~
      ❌ test/fixtures/recipes/llm-compressor/invalid/bad-shape.yaml:9:11 an AWQModifier mapping is a map {smooth_layer: ..., balance_layers: [...]}; the [[balance layers], smooth layer] lists are SmoothQuantModifier's form.
                  - [["re:.*gate_proj", "re:.*up_proj"], "re:.*post_attention_layernorm"]
                    ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
      ❌ test/fixtures/recipes/llm-compressor/invalid/bad-shape.yaml:10:3 "recipe_notes" in stage "quant_stage" is not part of an llm-compressor recipe: expected <group>_modifiers or a modifier name.
            recipe_notes: hello
            ~~~~~~~~~~~~
      "
    `);
  });
});

describeShared('imported llm-compressor recipes on stories260K', () => {
  const real = { model: sharedModel('stories260K'), dataset: sharedData('tinystories-calib.txt') };
  for (const name of names) {
    test(`${name}: validates and plans, imported and as it is`, () => {
      const fromFile = loadRecipe(imported(name, real));
      const direct = loadRecipe(fixture(name), [], real);
      for (const loaded of [fromFile, direct]) {
        if (!loaded.ok) throw new Error(printed(loaded.error));
        const plan = compilePlan(loaded.value);
        if (!plan.ok) throw new Error(printed(plan.error));
        expect(plan.value.warnings.filter((w) => w.severity === 'error')).toEqual([]);
      }
      if (!fromFile.ok || !direct.ok) return;
      expect(direct.value.recipe.stages).toEqual(fromFile.value.recipe.stages);
      expect(direct.value.importNote).toMatch(/is an llm-compressor recipe, converted in memory/);
    });
  }
});
