import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { printDiagnostics } from '../../src/diag/print.js';
import { loadRecipe } from '../../src/recipe/load.js';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const fixture = (dir: string, name: string) => join(repo, 'test/fixtures/recipes', dir, `${name}.yaml`);

/** the printed diagnostics for a fixture that must fail to load */
function printed(name: string, overrides: string[] = [], dir = 'invalid'): string {
  const result = loadRecipe(fixture(dir, name), overrides);
  if (result.ok) throw new Error(`${name} loaded without errors`);
  return '\n' + printDiagnostics(result.error, { cwd: repo });
}

describe('loadRecipe with an invalid recipe', () => {
  test('an alias used before its anchor is a diagnostic at the alias, not a thrown ReferenceError', () => {
    expect(printed('alias-before-anchor')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/alias-before-anchor.yaml:6:14 Unknown alias "*linears": no anchor "&linears" is set before it.
              targets: *linears
                       ~~~~~~~~
      "
    `);
  });

  test('an alias bomb is refused at its first alias', () => {
    expect(printed('alias-bomb')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/alias-bomb.yaml:4:8 Aliases expand to more than 100 values: an alias may repeat a value, not multiply it (this looks like an alias bomb).
          b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
                 ~~
      "
    `);
  });

  test('a recipe of one blank line prints its diagnostic (the squiggle under line 1)', () => {
    expect(printed('blank-line')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/blank-line.yaml:1:1 The recipe is empty: expected a map with "quantforge", "model" and "stages".
          
          ~
      "
    `);
  });

  test('an unknown top-level key suggests the close known key', () => {
    expect(printed('unknown-top-level-key')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/unknown-top-level-key.yaml:3:1 Unknown property "calibraton" at the top level. Did you mean "calibration"?
          calibraton:
          ~~~~~~~~~~
      "
    `);
  });

  test('an unknown stage key suggests the close parameter name', () => {
    expect(printed('unknown-stage-key')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/unknown-stage-key.yaml:6:5 Unknown property "smoothing_strenght" in stage "smoothquant". Did you mean "smoothing_strength"?
              smoothing_strenght: 0.8
              ~~~~~~~~~~~~~~~~~~
      "
    `);
  });

  test('a quantization argument at stage level says where it belongs', () => {
    expect(printed('misplaced-group-size')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/misplaced-group-size.yaml:7:5 Unknown property "groupsize" in stage "gptq". Did you mean "group_size" in config_groups.<name>.weights?
              groupsize: 128
              ~~~~~~~~~
      "
    `);
  });

  test('a misspelled stage kind lists the allowed kinds', () => {
    expect(printed('typo-kind')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/typo-kind.yaml:5:11 Unknown stage kind "gtpq". Did you mean "gptq"? Allowed kinds: gptq, awq, smoothquant, autoround, rtn.
            - kind: gtpq
                    ~~~~
      "
    `);
  });

  test('a stage without kind points at the stage', () => {
    expect(printed('missing-kind')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/missing-kind.yaml:5:5 Missing required property "kind" in stage 1 ("stages[0]"). Allowed kinds: gptq, awq, smoothquant, autoround, rtn.
            - scheme: W4A16
              ~~~~~~~~~~~~~
      "
    `);
  });

  test('a string where an integer belongs says expected and found', () => {
    expect(printed('wrong-type-samples')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/wrong-type-samples.yaml:5:12 Wrong type for "samples" in "calibration": expected an integer, found a string ("128").
            samples: "128"
                     ~~~~~
      "
    `);
  });

  test('a negative sample count is out of range', () => {
    expect(printed('negative-samples')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/negative-samples.yaml:5:12 Value -5 for "samples" in "calibration" is out of range: expected an integer >= 1.
            samples: -5
                     ~~
      "
    `);
  });

  test('an unknown scheme lists the presets', () => {
    expect(printed('bad-scheme')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/bad-scheme.yaml:6:13 Invalid value "W4A61" for "scheme" in stage "gptq". Did you mean "W4A16"? Allowed values: "W4A16", "W4A16_ASYM", "W8A16", "W8A8", "W4A8", "FP8", "FP8_DYNAMIC", "FP8_BLOCK", "NVFP4A16", "NVFP4", "MXFP4A16", "MXFP4", "GGUF_Q8_0", "GGUF_Q4_0", "GGUF_Q4_1", "GGUF_Q5_0", "GGUF_Q4_K", "GGUF_Q6_K".
              scheme: W4A61
                      ~~~~~
      "
    `);
  });

  test('duo_scaling accepts only true, false or "both"', () => {
    expect(printed('bad-duo-scaling')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/bad-duo-scaling.yaml:7:18 Invalid value "yes" for "duo_scaling" in stage "awq". Allowed values: true, false, "both".
              duo_scaling: yes
                           ~~~
      "
    `);
  });

  test('a missing model points at the top-level map', () => {
    expect(printed('missing-model')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/missing-model.yaml:1:1 Missing required property "model" at the top level.
          quantforge: 1
          ~~~~~~~~~~~~~
      "
    `);
  });

  test('missing stages are reported', () => {
    expect(printed('missing-stages')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/missing-stages.yaml:1:1 Missing required property "stages" at the top level.
          quantforge: 1
          ~~~~~~~~~~~~~
      "
    `);
  });

  test('an empty stage list is reported at the list', () => {
    expect(printed('empty-stages')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/empty-stages.yaml:4:9 "stages" is empty: expected at least 1 item.
          stages: []
                  ~~
      "
    `);
  });

  test('scheme and config_groups together point at both', () => {
    expect(printed('scheme-and-config-groups')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/scheme-and-config-groups.yaml:7:5 "scheme" and "config_groups" cannot be used together in stage "gptq": use one or the other.
              config_groups:
              ~~~~~~~~~~~~~
          test/fixtures/recipes/invalid/scheme-and-config-groups.yaml:6:5 "scheme" is set here
                  scheme: W4A16
                  ~~~~~~
      "
    `);
  });

  test('a quantizing stage with neither scheme nor config_groups is reported', () => {
    expect(printed('missing-scheme')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/missing-scheme.yaml:5:5 Missing "scheme" or "config_groups" in stage "rtn": expected one of them.
            - kind: rtn
              ~~~~~~~~~
      "
    `);
  });

  test('smoothing_strength outside (0, 1) gives the open range', () => {
    expect(printed('smoothing-strength-out-of-range')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/smoothing-strength-out-of-range.yaml:6:25 Value 1.5 for "smoothing_strength" in stage "smoothquant" is out of range: expected a number >= 0 and <= 1.
              smoothing_strength: 1.5
                                  ~~~
      "
    `);
  });

  test('a group strategy without group_size says why group_size is needed', () => {
    expect(printed('group-strategy-without-size')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/group-strategy-without-size.yaml:9:9 Missing required property "group_size" in "config_groups.group_0.weights" of stage "rtn": strategy "group" needs an integer group_size.
                  weights:
                  ~~~~~~~
      "
    `);
  });

  test('bad indentation is a YAML syntax error with its line and column', () => {
    expect(printed('yaml-bad-indentation')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/yaml-bad-indentation.yaml:6:4 Invalid YAML: sequence item without - indicator (check this line's indentation).
             block_size: 64
             ~~~~~~~~~~~~~~
      "
    `);
  });

  test('a duplicate key points at both occurrences', () => {
    expect(printed('yaml-duplicate-key')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/yaml-duplicate-key.yaml:4:1 Duplicate key "model": each key may appear only once in a map.
          model: ../models/other
          ~~~~~
          test/fixtures/recipes/invalid/yaml-duplicate-key.yaml:2:1 "model" is first set here
              model: ../models/stories15M
              ~~~~~
      "
    `);
  });

  test('an unsupported recipe version is reported', () => {
    expect(printed('wrong-version')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/wrong-version.yaml:1:13 Invalid value 2 for "quantforge": expected 1.
          quantforge: 2
                      ~
      "
    `);
  });

  test('an unknown output format lists the formats', () => {
    expect(printed('bad-output-format')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/bad-output-format.yaml:8:15 Invalid value "safetensors" for "format" in "outputs[0]". Allowed values: "compressed-tensors", "onnx", "gguf".
            - { format: safetensors, path: ../out/model }
                        ~~~~~~~~~~~
      "
    `);
  });

  test('an output without path is reported at the output', () => {
    expect(printed('missing-output-path')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/missing-output-path.yaml:8:5 Missing required property "path" in "outputs[0]".
            - format: onnx
              ~~~~~~~~~~~~
      "
    `);
  });

  test('two mistakes in one file are both reported, in file order', () => {
    expect(printed('two-errors')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/two-errors.yaml:5:12 Value 1 for "seq_len" in "calibration" is out of range: expected an integer >= 2.
            seq_len: 1
                     ~
      ❌ test/fixtures/recipes/invalid/two-errors.yaml:9:12 Wrong type for "iters" in stage "autoround": expected an integer, found a number (200.5).
              iters: 200.5
                     ~~~~~
      "
    `);
  });

  test('a sweep value of the wrong type points at that value', () => {
    expect(printed('bad-sweep-value')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/bad-sweep-value.yaml:9:39 Wrong type for "smoothing_strength" in stage "smoothquant": expected a number, found a string ("high").
            stages[0].smoothing_strength: [0.5, high, 0.8]
                                                ~~~~
      "
    `);
  });

  test('a sweep path to a stage that does not exist points at the index', () => {
    expect(printed('bad-sweep-path')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/bad-sweep-path.yaml:9:9 No item [2] in "stages": it has 2 items, so the index must be 0 to 1.
            stages[2].smoothing_strength: [0.5, 0.8]
                  ~~~
      "
    `);
  });

  test('an unknown example model size lists the sizes', () => {
    expect(printed('bad-model-example')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/bad-model-example.yaml:2:19 Invalid value "7b" for "example" in "model". Did you mean "1b"? Allowed values: "tiny", "100m", "1b".
          model: { example: 7b }
                            ~~
      "
    `);
  });

  test('datasets are required in calibration and perplexity', () => {
    expect(printed('missing-dataset')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/missing-dataset.yaml:3:1 Missing required property "dataset" in "calibration".
          calibration:
          ~~~~~~~~~~~
      ❌ test/fixtures/recipes/invalid/missing-dataset.yaml:9:15 Missing required property "dataset" in "evaluate.perplexity".
            perplexity: { seq_len: 512 }
                        ~~~~~~~~~~~~~~~~
      "
    `);
  });

  test('an empty document says what a recipe needs', () => {
    expect(printed('empty-recipe')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/empty-recipe.yaml:1:1 The recipe is empty: expected a map with "quantforge", "model" and "stages".
          # a recipe with nothing in it yet
          ~
      "
    `);
  });

  test('a document that is not a map says what the recipe must be', () => {
    expect(printed('not-a-map')).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/not-a-map.yaml:1:1 Wrong type for the recipe: expected a map, found a list.
          - kind: gptq
          ~~~~~~~~~~~~
      "
    `);
  });
});

describe('loadRecipe with a bad --set', () => {
  const valid = (overrides: string[]) => printed('smoothquant-gptq-w8a8', overrides, 'valid');

  test('an index past the end of stages points at the index in the argument', () => {
    expect(valid(['stages[9].iters=50'])).toMatchInlineSnapshot(`
      "
      ❌ --set:1:7 No item [9] in "stages": it has 2 items, so the index must be 0 to 1.
          stages[9].iters=50
                ~~~
      "
    `);
  });

  test('an unknown key in the argument suggests the close parameter', () => {
    expect(valid(['stages[1].dampening_fraction=0.1'])).toMatchInlineSnapshot(`
      "
      ❌ --set:1:11 Unknown property "dampening_fraction" in stage "gptq". Did you mean "dampening_frac"?
          stages[1].dampening_fraction=0.1
                    ~~~~~~~~~~~~~~~~~~
      "
    `);
  });

  test('a value of the wrong type points at the value in the argument', () => {
    expect(valid(['evaluate.perplexity.max_windows=ten'])).toMatchInlineSnapshot(`
      "
      ❌ --set:1:33 Wrong type for "max_windows" in "evaluate.perplexity": expected an integer or null, found a string ("ten").
          evaluate.perplexity.max_windows=ten
                                          ~~~
      "
    `);
  });

  test('a bad value among sweep values points at that value', () => {
    expect(valid(['stages[0].smoothing_strength=0.5,1.2,0.8'])).toMatchInlineSnapshot(`
      "
      ❌ --set:1:34 Value 1.2 for "smoothing_strength" in stage "smoothquant" is out of range: expected a number >= 0 and <= 1.
          stages[0].smoothing_strength=0.5,1.2,0.8
                                           ~~~
      "
    `);
  });

  test('malformed arguments are syntax errors, all reported', () => {
    expect(valid(['stages[0]smoothing_strength=1', 'calibration.samples', 'stages[1].ignore=[lm_head'])).toMatchInlineSnapshot(`
      "
      ❌ --set:1:10 Unexpected "s" in path "stages[0]smoothing_strength": expected "." or "[index]".
          stages[0]smoothing_strength=1
                   ~~~~~~~~~~~~~~~~~~
      ❌ --set:1:1 Missing "=" in "calibration.samples": expected path=value, as in stages[0].iters=50.
          calibration.samples
          ~~~~~~~~~~~~~~~~~~~
      ❌ --set:1:18 Invalid value "[lm_head": Flow sequence must end with a ].
          stages[1].ignore=[lm_head
                           ~~~~~~~~
      "
    `);
  });

  test('an error inside a flow value points inside the argument', () => {
    expect(
      valid(['stages[1].config_groups={g: {targets: [Linear], weights: {num_bits: 3, strategy: channel}}}', 'stages[1].scheme=null']),
    ).toMatchInlineSnapshot(`
      "
      ❌ --set:1:11 "scheme" and "config_groups" cannot be used together in stage "gptq": use one or the other.
          stages[1].config_groups={g: {targets: [Linear], weights: {num_bits: 3, strategy: channel}}}
                    ~~~~~~~~~~~~~
          --set:1:11 "scheme" is set here
              stages[1].scheme=null
                        ~~~~~~
      ❌ --set:1:69 Invalid value 3 for "num_bits" in "config_groups.g.weights" of stage "gptq". Allowed values: 4, 8.
          stages[1].config_groups={g: {targets: [Linear], weights: {num_bits: 3, strategy: channel}}}
                                                                              ~
      ❌ --set:1:18 Invalid value null for "scheme" in stage "gptq". Allowed values: "W4A16", "W4A16_ASYM", "W8A16", "W8A8", "W4A8", "FP8", "FP8_DYNAMIC", "FP8_BLOCK", "NVFP4A16", "NVFP4", "MXFP4A16", "MXFP4", "GGUF_Q8_0", "GGUF_Q4_0", "GGUF_Q4_1", "GGUF_Q5_0", "GGUF_Q4_K", "GGUF_Q6_K".
          stages[1].scheme=null
                           ~~~~
      "
    `);
  });

  test('a recipe error and an argument error are reported together, file first', () => {
    expect(printed('negative-samples', ['calibration.sed=1'])).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/invalid/negative-samples.yaml:5:12 Value -5 for "samples" in "calibration" is out of range: expected an integer >= 1.
            samples: -5
                     ~~
      ❌ --set:1:13 Unknown property "sed" in "calibration". Did you mean "seed"?
          calibration.sed=1
                      ~~~
      "
    `);
  });
});
